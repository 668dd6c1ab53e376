"""Test harness: real PostgreSQL and real Redis on loopback.

* The schema is built once per run by the migrations, in a dedicated database.
* Each test runs inside an outer transaction that is rolled back (the session commits
  savepoints), unless it asks for ``committed``: then it really commits, so threads and
  processes see its rows, and the tables are emptied afterwards.
* Redis uses a dedicated database index, flushed around every test.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime

import psycopg
import pytest
from flask import Flask
from flask_migrate import upgrade
from redis import Redis
from sqlalchemy import text

from app import create_app
from recovery.db import CLOCK_EXTENSION, RecoverySession, db
from recovery.effects import DISPATCHER_EXTENSION
from tests.fake_twilio import FakeTwilio
from tests.processes import free_port, running, wait_until
from tests.support import Clock, Driver, RecordingDispatcher, installed

PG_ADMIN_DSN = os.environ.get("TEST_PG_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
TEST_DB_NAME = os.environ.get("TEST_DB_NAME", "slot_recovery_test")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def pg_url(dbname: str) -> str:
    base = PG_ADMIN_DSN.rsplit("/", 1)[0]
    return f"{base}/{dbname}".replace("postgresql://", "postgresql+psycopg://", 1)


def recreate_database(name: str) -> str:
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
            (name,),
        )
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    return pg_url(name)


def app_config(database_url: str, **extra) -> dict:
    return {
        "TESTING": True,
        "SECRET_KEY": "test-secret-key",
        "SQLALCHEMY_DATABASE_URI": database_url,
        "REDIS_URL": REDIS_URL,
        "PUBLIC_BASE_URL": "http://localhost",
        # Signs the inbound webhook in tests; with no account SID, SMS use the sandbox.
        "TWILIO_AUTH_TOKEN": "test-twilio-token",
        # Texts go out as fast as the test sends them; the sender rate has its own tests
        # (tests/test_sender_rate.py), which turn it on.
        "SMS_SENDER_RATE": 0,
        **extra,
    }


@pytest.fixture(scope="session")
def database_url() -> str:
    return recreate_database(TEST_DB_NAME)


def dispose(app: Flask) -> None:
    """Stop an app's job thread and close its pooled connections (unclosed ones warn)."""
    dispatcher = app.extensions.get(DISPATCHER_EXTENSION)
    if hasattr(dispatcher, "stop"):
        dispatcher.stop()
    with app.app_context():
        for engine in db.engines.values():
            engine.dispose()
    redis = app.extensions.get("recovery.redis")
    if redis is not None:
        redis.close()


@pytest.fixture
def make_app(app: Flask, database_url: str) -> Iterator:
    """Build extra apps (other config) that are cleaned up after the test."""
    made: list[Flask] = []

    def make(**overrides) -> Flask:
        url = overrides.pop("SQLALCHEMY_DATABASE_URI", database_url)
        made.append(create_app(app_config(url, **overrides)))
        return made[-1]

    yield make
    for extra in made:
        dispose(extra)


@pytest.fixture(scope="session")
def app(database_url: str) -> Iterator[Flask]:
    app = create_app(app_config(database_url))
    with app.app_context():
        upgrade()
    yield app
    dispose(app)


@pytest.fixture
def redis_conn() -> Iterator[Redis]:
    conn = Redis.from_url(REDIS_URL)
    conn.flushdb()
    yield conn
    conn.flushdb()
    conn.close()


@pytest.fixture
def recorder(app: Flask) -> Iterator[RecordingDispatcher]:
    """Record the effects the domain requests instead of queueing them."""
    with installed(app, DISPATCHER_EXTENSION, RecordingDispatcher()) as recording:
        yield recording


@pytest.fixture
def clock(app: Flask) -> Iterator[Clock]:
    """Time for the app under test, moved by hand. Starts on a fixed winter morning."""
    start = datetime(2026, 1, 12, 9, 0, tzinfo=UTC)  # a Monday; London is on GMT
    with installed(app, CLOCK_EXTENSION, Clock(start)) as test_clock:
        yield test_clock


@pytest.fixture
def driver(app: Flask, recorder: RecordingDispatcher, clock: Clock) -> Driver:
    return Driver(app, recorder, clock)


@pytest.fixture
def session(app: Flask, redis_conn: Redis) -> Iterator:
    """A session inside an outer transaction that is rolled back after the test."""
    with app.app_context():
        connection = db.engine.connect()
        outer = connection.begin()
        original = db.session
        db.session = db._make_scoped_session(
            {
                "class_": RecoverySession,
                "bind": connection,
                "join_transaction_mode": "create_savepoint",
            }
        )
        try:
            yield db.session
        finally:
            db.session.remove()
            db.session = original
            outer.rollback()
            connection.close()


def truncate_all(app: Flask) -> None:
    with app.app_context():
        tables = ", ".join(t.name for t in db.metadata.sorted_tables)
        with db.engine.begin() as conn:
            # The audit trail refuses TRUNCATE by trigger; the test database's superuser
            # switches triggers off for this cleanup only (the app's sessions cannot).
            conn.execute(text("SET LOCAL session_replication_role = replica"))
            conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))


@pytest.fixture
def committed(app: Flask, redis_conn: Redis) -> Iterator:
    """A session that really commits; every table is emptied after the test."""
    with app.app_context():
        try:
            yield db.session
        finally:
            db.session.remove()
            truncate_all(app)


@pytest.fixture
def fake_twilio() -> Iterator[FakeTwilio]:
    with FakeTwilio() as fake:
        yield fake


@pytest.fixture
def twilio_app(make_app, fake_twilio: FakeTwilio) -> Flask:
    """The app with real Twilio settings, its SDK pointed at the fake on loopback."""
    return make_app(
        TWILIO_ACCOUNT_SID=fake_twilio.account_sid,
        TWILIO_AUTH_TOKEN=fake_twilio.auth_token,
        TWILIO_FROM_NUMBER="+447700900000",
        TWILIO_API_BASE_URL=fake_twilio.base_url,
    )


@pytest.fixture(scope="session")
def localstripe(tmp_path_factory) -> Iterator[str]:
    """A real HTTP Stripe API fake on loopback; returns its base URL."""
    port = free_port()
    data_dir = tmp_path_factory.mktemp("localstripe")
    cmd = [sys.executable, "-m", "tests.localstripe_server", str(port), str(data_dir)]
    with running(cmd, dict(os.environ)) as proc:
        base = f"http://127.0.0.1:{port}"
        wait_until(lambda: _answers(base), timeout=20, what="localstripe", proc=proc)
        yield base


def _answers(base: str) -> bool:
    try:
        urllib.request.urlopen(base + "/v1/balance", timeout=1)  # noqa: S310 (loopback)
    except urllib.error.HTTPError:
        return True  # it answered (401 without a key)
    except OSError:
        return False
    return True


STRIPE_WEBHOOK_SECRET = "whsec_test_secret"


@pytest.fixture
def stripe_app(make_app, localstripe: str) -> Flask:
    """The app with real Stripe settings, its SDK pointed at localstripe."""
    return make_app(
        STRIPE_SECRET_KEY="sk_test_local",
        STRIPE_PUBLISHABLE_KEY="pk_test_local",
        STRIPE_WEBHOOK_SECRET=STRIPE_WEBHOOK_SECRET,
        STRIPE_API_BASE_URL=localstripe,
    )


@pytest.fixture
def client(app: Flask):
    return app.test_client()
