"""The migrations build the whole schema, have one head and match the models."""

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from flask_migrate import downgrade, upgrade
from sqlalchemy import inspect, select, text

from recovery.db import db
from recovery.demo.seed import seed_demo
from recovery.models import Appointment, Customer, Shop
from tests.conftest import TEST_DB_NAME, recreate_database

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def drift(app) -> list:
    with app.app_context(), db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return compare_metadata(context, db.metadata)


@pytest.fixture
def empty_pg_app(make_app):
    return make_app(SQLALCHEMY_DATABASE_URI=recreate_database(TEST_DB_NAME + "_migrations"))


def test_one_head():
    heads = ScriptDirectory(str(MIGRATIONS)).get_heads()
    assert len(heads) == 1


def test_upgrade_from_empty_postgres_then_no_drift(empty_pg_app):
    with empty_pg_app.app_context():
        upgrade()
        tables = set(inspect(db.engine).get_table_names())
    assert {t.name for t in db.metadata.sorted_tables} <= tables
    assert drift(empty_pg_app) == []


def test_downgrade_to_base_and_back(empty_pg_app):
    with empty_pg_app.app_context():
        upgrade()
        downgrade(revision="base")
        assert set(inspect(db.engine).get_table_names()) == {"alembic_version"}
        upgrade()
        constraint = db.session.scalar(
            text("SELECT conname FROM pg_constraint WHERE conname = 'ex_appointments_no_overlap'")
        )
        db.session.remove()
    assert constraint == "ex_appointments_no_overlap"
    assert drift(empty_pg_app) == []


def test_sqlite_embedded_database_migrates_and_seeds_once(make_app, tmp_path):
    app = make_app(SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'demo.sqlite3'}", REDIS_URL=None)
    with app.app_context():
        upgrade()
        first = seed_demo(db.session)
        db.session.commit()
        second = seed_demo(db.session)
        db.session.commit()
        assert first.created and not second.created
        assert db.session.scalar(select(db.func.count()).select_from(Shop)) == 1
        assert db.session.scalar(select(db.func.count()).select_from(Customer)) == 20
        appointments = db.session.scalar(select(db.func.count()).select_from(Appointment))
        assert appointments >= 30
        db.session.remove()


def test_0009_refuses_two_shops_with_one_own_number(empty_pg_app, capfd):
    """The unique sender index cannot be built over shops that share an own number; the
    migration names them instead of choosing which shop keeps it."""
    from tests import factories as f

    with empty_pg_app.app_context():
        upgrade(revision="0008")
        for name in ("First", "Second"):
            f.shop(db.session, name=name, sms_from_number="+447700800055")
        db.session.commit()
        db.session.remove()
        with pytest.raises(SystemExit):  # flask_migrate logs the error, then exits
            upgrade()
        assert "same own SMS sender number (+447700800055: shops 1, 2)" in capfd.readouterr().err
        db.session.execute(text("UPDATE shops SET sms_from_number = NULL WHERE id = 2"))
        db.session.commit()
        db.session.remove()
        upgrade()
        assert db.session.scalar(
            text("SELECT indexname FROM pg_indexes WHERE indexname = 'uq_shops_sms_from_number'")
        )
        db.session.remove()
