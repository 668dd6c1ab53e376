"""Sending many texts at once: a pool of real workers against the fake Twilio API, which
records when each text arrives.

Each sender number keeps to its rate (``SMS_SENDER_RATE``) across all the workers; a
``429`` backs off and retries without reordering a conversation; a worker killed in the
middle of a batch neither loses nor repeats a text.
"""

from __future__ import annotations

import signal
import threading
from datetime import timedelta
from itertools import pairwise

import pytest
from rq import Worker
from sqlalchemy import select, update

from jobs import tasks
from recovery.booking import cancellation
from recovery.db import db, utcnow
from recovery.effects import EffectKind
from recovery.messaging.gateway import TemporarySendError
from recovery.messaging.outbox import Purpose, queue_sms
from recovery.models import Message
from tests import factories as f
from tests.conftest import REDIS_URL
from tests.fake_twilio import FakeTwilio
from tests.fault_support import settle
from tests.processes import BIN, running, wait_until, worker_cmd
from tests.scenario import scene
from tests.test_faults_crashes import twilio_env

RATE = 4.0  # texts per second per sender number in these tests
WORKER = worker_cmd(REDIS_URL, with_scheduler=True)  # the Procfile's: RQ retries need it
# The Procfile's scheduler: moves each text's job at its slot to the queue.
SCHEDULER = [str(BIN / "flask"), "--app", "app", "jobs", "scheduler", "--interval", "0.25"]


class Arrivals:
    """When each text reached the fake provider, by sender number."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.seen: list[tuple[str, str, str, float]] = []  # from, to, body, unix time

    def __call__(self, message, at: float) -> None:
        with self.lock:
            self.seen.append((message["from_"], message["to"], message["body"], at))

    def times(self, sender: str) -> list[float]:
        with self.lock:
            return sorted(at for from_, _, _, at in self.seen if from_ == sender)

    def __len__(self) -> int:
        with self.lock:
            return len(self.seen)


@pytest.fixture
def arrivals() -> Arrivals:
    return Arrivals()


@pytest.fixture
def provider(arrivals: Arrivals):
    with FakeTwilio(on_accept=arrivals) as fake:
        yield fake


def texts_from(session, number: str, count: int) -> list[int]:
    """``count`` texts queued from a shop with its own ``number``, one per customer."""
    shop = f.shop(session, sms_from_number=number)
    return [
        queue_sms(session, shop, f.customer(session, shop), f"Slot {i} opened.", Purpose.OFFER).id
        for i in range(count)
    ]


def statuses(session, ids: list[int]) -> list[str]:
    session.expire_all()
    return list(session.scalars(select(Message.status).where(Message.id.in_(ids))))


def test_a_pool_of_workers_keeps_each_sender_number_to_its_rate(
    app, database_url, redis_conn, committed, provider, arrivals
):
    """Three workers share two numbers' texts: 12 from one, 6 from the other, queued in one
    commit (one batch job). Consecutive texts from one number reach the provider at least
    one interval apart, so a number never goes faster than its rate."""
    busy, quiet = "+447700900101", "+447700900102"
    ids = texts_from(committed, busy, 12) + texts_from(committed, quiet, 6)
    env = twilio_env(database_url, provider, SMS_SENDER_RATE=str(RATE))
    with (
        running(SCHEDULER, env),
        running(WORKER, env) as w1,
        running(WORKER, env),
        running(WORKER, env),
    ):
        committed.commit()  # the send job goes to the queue now
        wait_until(lambda: len(arrivals) >= len(ids), 60, "every text to go out", w1)
        settle(1.0)

    interval = 1 / RATE
    for number, count in ((busy, 12), (quiet, 6)):
        times = arrivals.times(number)
        assert len(times) == count  # each once
        gaps = [b - a for a, b in pairwise(times)]
        # At least an interval apart at the sender, less the loopback's jitter on arrival.
        assert min(gaps) >= interval * 0.8, (number, gaps)
        assert (count - 1) / (times[-1] - times[0]) <= RATE * 1.05
    # Both numbers went at once: the quiet number did not wait behind the busy one.
    assert arrivals.times(quiet)[-1] < arrivals.times(busy)[-1]
    assert set(statuses(committed, ids)) == {"sent"}
    assert len({m["sid"] for m in provider.messages}) == len(ids)


def test_a_429_backs_off_and_keeps_the_conversation_in_order(
    app, database_url, redis_conn, committed, provider, arrivals
):
    """Twilio refuses the first text with 429 (too many requests): the job backs off and
    retries, and the customer still reads the three texts in the order they were written."""
    shop = f.shop(committed, sms_from_number="+447700900103")
    customer = f.customer(committed, shop)
    ids = [
        queue_sms(committed, shop, customer, body, Purpose.OFFER).id
        for body in ("First.", "Second.", "Third.")
    ]
    provider.fail_next(1, status=429)
    env = twilio_env(database_url, provider, SMS_SENDER_RATE=str(RATE))
    with running(SCHEDULER, env), running(WORKER, env) as worker, running(WORKER, env):
        committed.commit()
        wait_until(lambda: len(arrivals) >= 3, 60, "the three texts", worker)
        settle(1.0)
    assert [body for _, _, body, _ in sorted(arrivals.seen, key=lambda s: s[3])] == [
        "First.",
        "Second.",
        "Third.",
    ]
    assert provider.create_attempts == 4  # the refused one, then each text once
    assert statuses(committed, ids) == ["sent"] * 3


def test_a_text_waits_for_the_earlier_one_of_its_conversation(twilio_app, fake_twilio):
    """Across jobs too: while the first text to a phone is not sent (the provider said
    503), the second to that phone is not sent before it; once the first goes, it goes."""
    with twilio_app.app_context():
        shop = f.shop(db.session)
        customer = f.customer(db.session, shop)
        first = queue_sms(db.session, shop, customer, "First.", Purpose.OFFER).id
        second = queue_sms(db.session, shop, customer, "Second.", Purpose.OFFER).id
        db.session.commit()
        fake_twilio.fail_next(1, status=503)
        with pytest.raises(TemporarySendError):
            tasks.send_message(first)
        db.session.rollback()
        assert tasks.send_message(second) == "deferred to its turn"  # asked again soon
        assert fake_twilio.messages == []
        assert db.session.get(Message, second).status == "queued"
        assert tasks.send_message(first) == "sent"
        assert tasks.send_message(second) == "sent"
        db.session.remove()
    assert [m["body"] for m in fake_twilio.messages] == ["First.", "Second."]


def test_a_worker_killed_mid_batch_neither_loses_nor_repeats_a_text(
    app, database_url, redis_conn, committed, provider, arrivals
):
    """A batch of 20 texts, four in flight at a time. The provider holds the first four
    requests and the worker is SIGKILLed: it had claimed all twenty, four were in flight
    (which the provider then accepts: the dead worker never learns) and sixteen not
    started. The sweep and a new worker finish the batch: every text reaches the provider
    exactly once."""
    ids = texts_from(committed, "+447700900104", 20)
    env = twilio_env(database_url, provider, SMS_SENDER_RATE="0", SEND_CONCURRENCY="4")
    provider.hold()
    with running(WORKER, env) as worker:
        committed.commit()
        wait_until(lambda: provider.held >= 4, 30, "four sends in flight", worker)
        worker.stop(signal.SIGKILL)
    provider.release()  # the provider accepts what was in flight; nobody hears about it
    wait_until(lambda: len(arrivals) >= 4, 10, "the provider to accept the four")
    settle(0.5)
    assert len(arrivals) == 4
    assert statuses(committed, ids) == ["sending"] * 20  # claimed before any call

    # Half a minute later the sweep finds them (their age is set, not waited for).
    then = utcnow() - timedelta(seconds=31)
    committed.execute(
        update(Message).where(Message.id.in_(ids)).values(created_at=then, sending_at=then)
    )
    committed.commit()
    with running(WORKER, env) as worker:
        from jobs.connection import queue_for

        queue_for(app).enqueue("jobs.tasks.sweep")
        wait_until(lambda: len(arrivals) >= len(ids), 60, "the rest of the batch", worker)
        wait_until(lambda: redis_conn.llen("rq:queue:default") == 0, 30, "the queue to drain")
        settle(1.0)

    phones = [to for _, to, _, _ in arrivals.seen]
    assert len(phones) == len(set(phones)) == len(ids)  # each text exactly once
    assert set(statuses(committed, ids)) == {"sent"}
    assert provider.lookups >= 1  # the in-flight ones were looked up, not sent again


def test_a_cancelled_slots_offer_goes_before_the_notice_of_its_cancellation(
    app, database_url, redis_conn, committed, provider, arrivals, monkeypatch
):
    """At one text a second, staff cancel a paid booking. The notice to the customer who
    cancelled and the slot's first offer leave from the shop's one number: the offer goes
    first (its time to answer is running), the notice one turn after it."""
    monkeypatch.setitem(app.config, "SMS_SENDER_RATE", 1.0)  # as the workers run
    s = scene(committed, utcnow(), sms_from_number="+447700900105")
    committed.commit()
    env = twilio_env(database_url, provider, SMS_SENDER_RATE="1")
    with running(SCHEDULER, env), running(WORKER, env) as worker, running(WORKER, env):
        # Both workers up (their app built), as in a running deployment: a cold start
        # longer than the turn would let the notice go first.
        wait_until(lambda: len(Worker.all(connection=redis_conn)) == 2, 60, "workers", worker)
        cancellation.cancel_appointment(committed, s.booking.id, reason="staff")
        committed.commit()  # the notice waits a turn; the offer's job starts now
        wait_until(lambda: len(arrivals) >= 2, 30, "the offer and the notice", worker)
        settle(1.0)

    (_, first_to, first_body, first_at), (_, second_to, second_body, second_at) = sorted(
        arrivals.seen, key=lambda seen: seen[3]
    )
    assert first_to == s.customers[0].phone and "Reply YES" in first_body
    assert second_to == s.owner.phone and "cancelled" in second_body
    assert second_at - first_at >= 0.8  # one turn of the number apart, less jitter
    assert len(arrivals) == 2


@pytest.mark.parametrize(("rate", "wait"), [(0, None), (2.0, timedelta(milliseconds=500))])
def test_the_notice_waits_one_turn_only_where_the_number_has_a_rate(
    app, session, clock, recorder, monkeypatch, rate, wait
):
    """With a sender rate the notice is asked for one interval after the cancellation;
    without one (the rate off, or no Redis to share it) it goes at once."""
    monkeypatch.setitem(app.config, "SMS_SENDER_RATE", rate)
    s = scene(session, clock.now)
    cancellation.cancel_appointment(session, s.booking.id, now=clock.now)
    session.commit()
    notice = session.scalar(
        select(Message).where(Message.to_number == s.owner.phone, Message.purpose == "refunded")
    )
    sends = [e for e in recorder.of_kind(EffectKind.SEND_MESSAGE) if e.args == (notice.id,)]
    assert [e.at for e in sends] == [None if wait is None else clock.now + wait]
