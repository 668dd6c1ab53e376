"""Crashes and outages, with the real processes: a worker killed mid-send, the scheduler down,
Redis gone during a YES, PostgreSQL restarted under a running service.

Servers that a test breaks are its own (tests/fault_support.py); the shared PostgreSQL and
Redis are never stopped. Waits poll for an outcome with a generous limit; no assertion
depends on how fast anything was.
"""

from __future__ import annotations

import json
import logging
import signal
from datetime import timedelta

import psycopg
import pytest
from flask_migrate import upgrade
from sqlalchemy import func, select, update

from app import create_app
from jobs import tasks
from jobs.connection import queue_for
from jobs.dispatch import RQDispatcher
from recovery.db import CLOCK_EXTENSION, db, utcnow
from recovery.effects import Effect, EffectKind
from recovery.messaging import texts
from recovery.messaging.outbox import Purpose, queue_sms
from recovery.models import Appointment, Message, OfferStatus, SlotOffer
from recovery.offers.openings import live_offer
from tests import factories as f
from tests.conftest import REDIS_URL, app_config, dispose
from tests.fake_twilio import FakeTwilio
from tests.fault_support import (
    get_http,
    post_signed_http,
    private_postgres,
    private_redis,
    settle,
)
from tests.processes import BIN, free_port, process_env, running, wait_until, worker_cmd
from tests.support import Clock, installed
from tests.test_races import at_once
from tests.twilio_signing import SHOP_NUMBER, new_sid, reply_text, signed_post

WORKER = worker_cmd(REDIS_URL, with_scheduler=True)
# The Procfile's scheduler: registers the periodic jobs (and again whenever Redis lost
# them), then polls every second.
SCHEDULER = [str(BIN / "flask"), "--app", "app", "jobs", "scheduler", "--interval", "1"]
PAY = "Pay the"


def twilio_env(database_url: str, fake: FakeTwilio, **extra: str) -> dict[str, str]:
    return process_env(
        database_url,
        REDIS_URL,
        TWILIO_ACCOUNT_SID=fake.account_sid,
        TWILIO_AUTH_TOKEN=fake.auth_token,
        TWILIO_FROM_NUMBER=SHOP_NUMBER,
        TWILIO_API_BASE_URL=fake.base_url,
        **extra,
    )


def database_ok(base: str) -> bool:
    """What /healthz says of the database (its answer is 503 anyway while no sweep runs)."""
    answer = get_http(base + "/healthz")
    return answer.status != 0 and json.loads(answer.body)["database"]["ok"]


def plain_dsn(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def row_unlocked(database_url: str, message_id: int) -> bool:
    """True once nobody holds the message's row lock (a killed worker's transaction ended)."""
    with psycopg.connect(plain_dsn(database_url), autocommit=False) as conn:
        try:
            conn.execute("SET lock_timeout = '100ms'")
            conn.execute("SELECT 1 FROM messages WHERE id = %s FOR UPDATE", (message_id,))
            return True
        except psycopg.errors.LockNotAvailable:
            return False
        finally:
            conn.rollback()


# ------------------------------------------------------------------ worker killed mid-send


def test_a_worker_killed_mid_send_sends_exactly_once_after_restart(
    app, database_url, redis_conn, committed, fake_twilio
):
    shop = f.shop(committed)
    customer = f.customer(committed, shop)
    message = queue_sms(committed, shop, customer, "A slot opened today.", Purpose.OFFER)
    committed.commit()
    env = twilio_env(database_url, fake_twilio)

    # The provider holds the request: the worker has committed nothing and sent nothing yet.
    fake_twilio.hold()
    RQDispatcher(app).dispatch([Effect(EffectKind.SEND_MESSAGE, (message.id,))])
    with running(WORKER, env) as worker:
        wait_until(lambda: fake_twilio.held, 30, "the send to reach the provider", worker)
        worker.stop(signal.SIGKILL)
    fake_twilio.release(drop=True)  # its sender is dead: the provider never accepts it

    assert fake_twilio.messages == []
    committed.expire_all()
    # Claimed before the call: the next attempt must ask the provider before sending.
    assert committed.get(Message, message.id).status == "sending"
    wait_until(lambda: row_unlocked(database_url, message.id), 30, "the dead worker's lock")

    # Half a minute later the sweep finds it still sending. (Its age is set, not waited for.)
    committed.execute(
        update(Message)
        .where(Message.id == message.id)
        .values(
            created_at=utcnow() - timedelta(seconds=31),
            sending_at=utcnow() - timedelta(seconds=31),
        )
    )
    committed.commit()
    with running(WORKER, env) as worker:
        queue_for(app).enqueue("jobs.tasks.sweep")  # what the scheduler does every minute
        sent = wait_until(lambda: fake_twilio.messages, 30, "the message to go out", worker)
        # A second, duplicate job for the same message changes nothing either.
        RQDispatcher(app).dispatch([Effect(EffectKind.SEND_MESSAGE, (message.id,))])
        wait_until(lambda: redis_conn.llen("rq:queue:default") == 0, 30, "the queue to drain")
        settle(1.0)

    assert [m["to"] for m in fake_twilio.messages] == [customer.phone]  # exactly once
    assert fake_twilio.create_attempts == 2  # the dropped one, then the one accepted
    assert fake_twilio.lookups >= 1  # the provider was asked first: it did not have it
    committed.expire_all()
    row = committed.get(Message, message.id)
    assert row.status == "sent" and row.provider_sid == sent[0]["sid"]


# ------------------------------------------------------------------ scheduler down


def test_with_the_scheduler_down_no_offer_stays_stuck(
    app, database_url, redis_conn, committed, fake_twilio
):
    """Offers fall due while rqscheduler is down; half of their exact-time jobs were lost
    too. Once the scheduler is back, every due offer is expired once and the next customer
    of each opening gets exactly one offer SMS."""
    n = 8
    now = utcnow()
    shop = f.shop(committed)
    chair, service = f.resource(committed, shop), f.service(committed, shop)
    owner = f.customer(committed, shop, name="Owner")
    firsts = [f.customer(committed, shop) for _ in range(n)]
    nexts = [
        f.customer(committed, shop, last_settled_at=now - timedelta(days=1 + i)) for i in range(n)
    ]
    offers = []
    for i in range(n):
        source = f.appointment(
            committed,
            chair,
            owner,
            service,
            starts_at=now.replace(microsecond=0) + timedelta(days=2, hours=i),
            status="cancelled",
            paid=True,
        )
        opening = f.opening(committed, source)
        offers.append(f.offer(committed, opening, firsts[i], expires_at=now + timedelta(seconds=2)))
    committed.commit()
    # Their exact-time expiry jobs go to rq-scheduler; half of them are then lost.
    RQDispatcher(app).dispatch(
        [Effect(EffectKind.EXPIRE_OFFER, (o.id,), at=o.expires_at) for o in offers[: n // 2]]
    )
    env = twilio_env(database_url, fake_twilio)

    def stuck() -> int:
        committed.expire_all()
        return committed.scalar(
            select(func.count())
            .select_from(SlotOffer)
            .where(SlotOffer.status == OfferStatus.SENT, SlotOffer.expires_at <= utcnow())
        )

    with running(WORKER, env) as worker:
        # The worker alone cannot help: the offers fall due and stay stuck.
        wait_until(lambda: stuck() == n, 30, "the offers to fall due", worker)
        settle(1.0)
        assert stuck() == n and fake_twilio.messages == []

        with running(SCHEDULER, env) as scheduler:
            wait_until(lambda: stuck() == 0, 60, "the sweep to catch up", scheduler)
            wait_until(lambda: len(fake_twilio.messages) >= n, 60, "the next offers", worker)
            wait_until(lambda: redis_conn.llen("rq:queue:default") == 0, 30, "an idle queue")
            settle(1.0)

    committed.expire_all()
    for first, offer in zip(firsts, offers, strict=True):
        offers_here = committed.scalars(
            select(SlotOffer)
            .where(SlotOffer.slot_opening_id == offer.slot_opening_id)
            .order_by(SlotOffer.id)
        ).all()
        assert [o.status for o in offers_here] == [OfferStatus.EXPIRED, OfferStatus.SENT]
        assert offers_here[0].customer_id == first.id
    # Each next customer got one offer SMS; nobody got two.
    assert sorted(m["to"] for m in fake_twilio.messages) == sorted(c.phone for c in nexts)


# ------------------------------------------------------------------ Redis unavailable


def test_with_redis_down_a_yes_still_gets_one_booking_and_an_answer(
    make_app, committed, recorder, caplog
):
    now = utcnow()
    shop = f.shop(committed, cooldown_hours=0)
    chair, service = f.resource(committed, shop), f.service(committed, shop)
    owner = f.customer(committed, shop, name="Owner")
    a, b, c = (f.customer(committed, shop) for _ in range(3))
    next_up = f.customer(committed, shop, last_settled_at=now)
    openings = []
    for hours, winner, stale in ((0, a, b), (1, c, b)):
        source = f.appointment(
            committed,
            chair,
            owner,
            service,
            starts_at=now.replace(microsecond=0) + timedelta(days=2, hours=hours),
            status="cancelled",
            paid=True,
        )
        opening = f.opening(committed, source)
        f.offer(committed, opening, stale, status="expired", expires_at=now - timedelta(minutes=1))
        f.offer(committed, opening, winner)
        openings.append(opening)
    committed.commit()

    def yes(app, phone, body="YES"):
        return lambda: reply_text(signed_post(app.test_client(), body, phone))

    with private_redis() as redis_server, caplog.at_level(logging.ERROR):
        web = make_app(REDIS_URL=redis_server.url)

        # Killed: connections are refused at once.
        redis_server.kill()
        replies = at_once(yes(web, a.phone), yes(web, a.phone, "yes please"), yes(web, b.phone))
        assert sum(PAY in r for r in replies) == 1 and texts.already_yours() in replies
        assert texts.expired() in replies
        assert "relying on the database guard" in caplog.text

        # Frozen: connections hang until the client's timeout; the answer still comes.
        redis_server.start()
        redis_server.freeze()
        try:
            replies = at_once(yes(web, c.phone), yes(web, c.phone, "ok"))
        finally:
            redis_server.thaw()
        assert sorted(PAY in r for r in replies) == [False, True]
        assert texts.already_yours() in replies

        committed.expire_all()
        for opening, winner in zip(openings, (a, c), strict=True):
            booked = committed.scalars(
                select(Appointment).where(
                    Appointment.source_slot_opening_id == opening.id,
                    Appointment.status.in_(("pending_payment", "booked")),
                )
            ).all()
            assert [x.customer_id for x in booked] == [winner.id]

        # The payment deadlines could not be scheduled while Redis was away. Nobody pays:
        # once the deadline passes, the sweep releases both holds and offers the slots on.
        later = Clock(utcnow() + timedelta(minutes=shop.payment_hold_minutes + 2))
        with installed(web, CLOCK_EXTENSION, later), web.app_context():
            totals = tasks.sweep()
        assert totals["released_holds"] == 2
        committed.expire_all()
        live = [live_offer(committed, o.id) for o in openings]
        assert all(x is not None for x in live)
        assert next_up.id in [x.customer_id for x in live]
    assert "dispatching" in caplog.text  # the lost jobs were logged, not silently dropped


# ------------------------------------------------------------------ PostgreSQL restarted


@pytest.fixture
def private_db(redis_conn):
    """A private PostgreSQL with the app's schema and a shop whose customer holds an offer."""
    with private_postgres() as cluster:
        url = cluster.create_database("slot_recovery")
        setup = create_app(app_config(url))
        with setup.app_context():
            upgrade()
            session = db.session
            shop = f.shop(session)
            chair, service = f.resource(session, shop), f.service(session, shop)
            owner = f.customer(session, shop, name="Owner")
            a = f.customer(session, shop)
            source = f.appointment(
                session,
                chair,
                owner,
                service,
                starts_at=utcnow() + timedelta(days=2),
                status="cancelled",
                paid=True,
            )
            f.offer(session, f.opening(session, source), a)
            queued = queue_sms(session, shop, a, "Your booking is confirmed.", Purpose.BOOKED)
            session.commit()
            seeded = {"phone": a.phone, "shop": shop.name, "message_id": queued.id}
            db.session.remove()
        try:
            yield cluster, url, setup, seeded
        finally:
            dispose(setup)


def test_postgres_restarted_under_a_running_service_recovers_by_itself(private_db, redis_conn):
    cluster, url, setup, seeded = private_db
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with FakeTwilio() as fake:
        env = twilio_env(url, fake, PUBLIC_BASE_URL=base)
        web_cmd = [
            str(BIN / "gunicorn"),
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "2",
            "--threads",
            "2",
            "app:create_app()",
        ]

        def sms(body: str, sid: str):
            params = {
                "MessageSid": sid,
                "AccountSid": fake.account_sid,
                "From": seeded["phone"],
                "To": SHOP_NUMBER,
                "Body": body,
            }
            return post_signed_http(base, "/webhooks/twilio/sms", params, fake.auth_token)

        with running(web_cmd, env) as web, running(WORKER, env) as worker:
            # No scheduler runs here, so /healthz is 503 for the sweep; read its database part.
            wait_until(lambda: database_ok(base), 60, "web", web)
            assert sms("HELP", new_sid()).body.count(seeded["shop"]) == 1

            cluster.stop()
            down = get_http(base + "/healthz")
            assert down.status == 503 and json.loads(down.body)["database"]["ok"] is False
            yes_sid = new_sid()
            assert sms("YES", yes_sid).status >= 500  # Twilio retries a failed webhook
            # A send job that runs during the outage fails and is retried by RQ.
            RQDispatcher(setup).dispatch([Effect(EffectKind.SEND_MESSAGE, (seeded["message_id"],))])
            wait_until(lambda: "OperationalError" in worker.output(), 30, "the job to fail", worker)

            cluster.start()  # no process is restarted, nothing is done by hand
            wait_until(lambda: database_ok(base), 30, "recovery", web)
            retried = sms("YES", yes_sid)  # Twilio's retry of the same message
            assert retried.status == 200 and PAY in retried.body, retried
            assert sms("YES", yes_sid).body.count("<Message>") == 0  # and only once
            sent = wait_until(lambda: fake.messages, 60, "the retried send", worker)
            assert [m["to"] for m in sent] == [seeded["phone"]]

    with psycopg.connect(plain_dsn(url)) as conn:
        bookings = conn.execute(
            "SELECT count(*) FROM appointments WHERE status = 'pending_payment'"
        ).fetchone()[0]
        status = conn.execute(
            "SELECT status FROM messages WHERE id = %s", (seeded["message_id"],)
        ).fetchone()[0]
    assert bookings == 1 and status == "sent"
