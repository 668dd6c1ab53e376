"""Redis loses everything under a running stack (a restart without persistence: FLUSHDB).

gunicorn, an rq worker and the Procfile's scheduler run on the test Redis database. The
flush takes the periodic schedule, the exact-time jobs of an offer and a hold, and the
sweep's heartbeat. Nothing is restarted and nothing is run by hand: the scheduler puts the
periodic jobs back on its next pass, the sweep that follows expires the offer and releases
the hold from what the database says, and /healthz answers 503 while no sweep is on record.
"""

from __future__ import annotations

import json
import os
import signal
from datetime import timedelta

from rq import Queue
from rq.registry import StartedJobRegistry
from rq_scheduler import Scheduler
from sqlalchemy import update

from jobs.dispatch import RQDispatcher
from jobs.schedule import PREFIX, SCHEDULE
from recovery.db import utcnow
from recovery.effects import Effect, EffectKind
from recovery.models import Appointment, OfferStatus, PaymentStatus, SlotOffer
from recovery.redis_client import QUEUE_NAME
from tests import factories as f
from tests.fault_support import get_http, settle
from tests.processes import BIN, free_port, running, wait_until
from tests.test_faults_crashes import SCHEDULER, WORKER, twilio_env

SWEEP_EVERY = 2  # SWEEP_INTERVAL_SECONDS for the stack: /healthz fails after 3 without one


def health(base: str) -> tuple[int, dict]:
    answer = get_http(base + "/healthz")
    return answer.status, (json.loads(answer.body) if answer.status else {})


def test_after_redis_is_flushed_the_schedule_comes_back_and_the_sweep_repairs(
    app, database_url, redis_conn, committed, fake_twilio
):
    now = utcnow()
    # An opening offered to `first`; `second` is next in line.
    shop = f.shop(committed)
    chair, service = f.resource(committed, shop), f.service(committed, shop)
    owner = f.customer(committed, shop, name="Owner")
    first = f.customer(committed, shop)
    second = f.customer(committed, shop, last_settled_at=now - timedelta(days=1))
    source = f.appointment(
        committed,
        chair,
        owner,
        service,
        starts_at=now.replace(microsecond=0) + timedelta(days=2),
        status="cancelled",
        paid=True,
    )
    offer = f.offer(committed, f.opening(committed, source), first)
    # Elsewhere, a booking waiting for its deposit.
    other = f.shop(committed)
    holder = f.customer(committed, other)
    hold = f.appointment(
        committed,
        f.resource(committed, other),
        holder,
        f.service(committed, other),
        status="pending_payment",
        payment_due_at=now + timedelta(hours=1),
    )
    f.payment(committed, hold, status=PaymentStatus.PENDING)
    committed.commit()

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    web = [str(BIN / "gunicorn"), "--bind", f"127.0.0.1:{port}", "--workers", "1"]
    web += ["--threads", "2", "app:create_app()"]
    env = twilio_env(database_url, fake_twilio, SWEEP_INTERVAL_SECONDS=str(SWEEP_EVERY))
    with (
        running(web, env) as gunicorn,
        running(WORKER, env) as worker,
        running(SCHEDULER, env) as scheduler,
    ):
        wait_until(lambda: health(base)[0] == 200, 60, "a first sweep", gunicorn)

        # The offer and the hold fall due in a few seconds; their exact-time jobs wait in
        # rq-scheduler, as the domain asks for them.
        due = utcnow().replace(microsecond=0) + timedelta(seconds=3)
        committed.execute(update(SlotOffer).where(SlotOffer.id == offer.id).values(expires_at=due))
        committed.execute(
            update(Appointment).where(Appointment.id == hold.id).values(payment_due_at=due)
        )
        committed.commit()
        RQDispatcher(app).dispatch(
            [
                Effect(EffectKind.EXPIRE_OFFER, (offer.id,), at=due),
                Effect(EffectKind.RELEASE_HOLD, (hold.id,), at=due),
            ]
        )

        # Redis loses everything between two passes of the scheduler. (The scheduler is
        # paused, not restarted, so the flush lands between passes and no sweep can write
        # a heartbeat before /healthz is read; it resumes where it was.)
        os.killpg(scheduler.popen.pid, signal.SIGSTOP)
        queue = Queue(QUEUE_NAME, connection=redis_conn)
        wait_until(
            lambda: len(queue) == 0 and StartedJobRegistry(queue=queue).count == 0,
            30,
            "the worker to be idle",
            worker,
        )
        redis_conn.flushdb()

        status, report = health(base)
        assert status == 503, report
        assert report["status"] == "failing: sweep"
        assert report["sweep"]["error"] == "missing"
        settle(max(0.0, (due - utcnow()).total_seconds()) + 1.0)  # both are now overdue
        committed.expire_all()
        assert committed.get(SlotOffer, offer.id).status == OfferStatus.SENT
        assert committed.get(Appointment, hold.id).status == "pending_payment"

        os.killpg(scheduler.popen.pid, signal.SIGCONT)

        def repaired() -> bool:
            committed.expire_all()
            return (
                committed.get(SlotOffer, offer.id).status == OfferStatus.EXPIRED
                and committed.get(Appointment, hold.id).status == "cancelled"
            )

        wait_until(repaired, 30, "the sweep to expire the offer and release the hold", scheduler)
        wait_until(
            lambda: {second.phone, holder.phone} <= {m["to"] for m in fake_twilio.messages},
            30,
            "the next offer and the release text",
            worker,
        )
        wait_until(lambda: health(base)[0] == 200, 30, "/healthz to recover", gunicorn)
        assert "registered again" in scheduler.output()

    # The schedule is back once, under its stable ids, not doubled.
    periodic = sorted(
        job.id for job in Scheduler(connection=redis_conn).get_jobs() if job.id.startswith(PREFIX)
    )
    assert periodic == sorted(p.job_id for p in SCHEDULE)
    committed.expire_all()
    [live] = committed.query(SlotOffer).filter_by(status=OfferStatus.SENT).all()
    assert live.customer_id == second.id
    # Each got one text: the next customer the offer, the holder the release.
    assert sorted(m["to"] for m in fake_twilio.messages) == sorted([second.phone, holder.phone])
