"""The sweep: catches what exact-time jobs missed, and several sweepers split the work."""

import threading
from datetime import timedelta

from sqlalchemy import func, select

from jobs import tasks
from recovery.booking import cancellation
from recovery.db import utcnow
from recovery.models import Message, OfferStatus, SlotOffer
from recovery.offers.openings import live_offer
from tests import factories as f


def test_two_sweepers_at_once_expire_each_due_offer_once(app, committed, recorder):
    shop = f.shop(committed, cooldown_hours=0)
    service = f.service(committed, shop)
    owner = f.customer(committed, shop)
    first_wave = [f.customer(committed, shop, last_settled_at=utcnow()) for _ in range(30)]
    [f.customer(committed, shop) for _ in range(30)]  # who the slots go to next
    openings = []
    for i, customer in enumerate(first_wave):
        chair = f.resource(committed, shop)
        source = f.appointment(
            committed,
            chair,
            owner,
            service,
            status="cancelled",
            paid=True,
            starts_at=utcnow() + timedelta(days=1, minutes=i),
        )
        opening = f.opening(committed, source)
        f.offer(
            committed,
            opening,
            customer,
            sent_at=utcnow() - timedelta(minutes=16),
            expires_at=utcnow() - timedelta(minutes=1),
        )
        openings.append(opening.id)
    committed.commit()

    barrier = threading.Barrier(2)
    reports = []

    def sweeper():
        with app.app_context():
            barrier.wait()
            reports.append(tasks.sweep())

    threads = [threading.Thread(target=sweeper) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)

    assert sum(r["expired_offers"] for r in reports) == 30
    committed.expire_all()
    for opening_id in openings:
        statuses = committed.scalars(
            select(SlotOffer.status)
            .where(SlotOffer.slot_opening_id == opening_id)
            .order_by(SlotOffer.id)
        ).all()
        assert statuses == [OfferStatus.EXPIRED, OfferStatus.SENT]
    live_per_customer = committed.execute(
        select(SlotOffer.customer_id, func.count())
        .where(SlotOffer.status == "sent")
        .group_by(SlotOffer.customer_id)
    ).all()
    assert len(live_per_customer) == 30 and all(n == 1 for _, n in live_per_customer)
    texts = committed.scalar(
        select(func.count()).select_from(Message).where(Message.purpose == "offer")
    )
    assert texts == 30  # one new offer text per opening, not two


def test_sweep_restarts_an_opening_whose_job_was_lost(app, committed, recorder):
    shop = f.shop(committed)
    chair = f.resource(committed, shop)
    service = f.service(committed, shop)
    owner = f.customer(committed, shop)
    waiting = f.customer(committed, shop)
    source = f.appointment(committed, chair, owner, service, paid=True)
    result = cancellation.cancel_appointment(committed, source.id)
    committed.commit()
    recorder.clear()  # the offer_next job never ran: lost with a crashed worker
    report = tasks.sweep()
    assert report["restarted_openings"] == 1
    committed.expire_all()
    assert live_offer(committed, result.opening.id).customer_id == waiting.id


def test_sweep_requeues_a_message_a_crash_left_queued(app, committed, recorder):
    from recovery.effects import EffectKind
    from recovery.messaging.outbox import Purpose, queue_sms

    shop = f.shop(committed)
    customer = f.customer(committed, shop)
    message = queue_sms(committed, shop, customer, "hello", Purpose.OFFER)
    message.created_at = utcnow() - timedelta(minutes=2)
    committed.commit()
    recorder.clear()
    tasks.sweep()
    assert [e.args for e in recorder.of_kind(EffectKind.SEND_MESSAGE)] == [(message.id,)]


def test_sweep_asks_the_send_job_to_reconcile_a_message_left_sending(app, committed, recorder):
    """An attempt timed out or died after claiming the text: the sweep neither re-queues it
    nor leaves it; it asks the send job, which looks it up at the provider first."""
    from recovery.effects import EffectKind
    from recovery.messaging.outbox import Purpose, claim, queue_sms

    shop = f.shop(committed)
    customer = f.customer(committed, shop)
    stuck = queue_sms(committed, shop, customer, "hello", Purpose.OFFER)
    # To another phone: a text to the same one would wait for the stuck one to be sent.
    fresh = queue_sms(committed, shop, f.customer(committed, shop), "again", Purpose.OFFER)
    committed.commit()
    claim(committed, stuck.id, utcnow() - timedelta(minutes=2))
    claim(committed, fresh.id, utcnow())  # an attempt in flight right now: left to it
    committed.commit()
    recorder.clear()
    tasks.sweep()
    assert [e.args for e in recorder.of_kind(EffectKind.SEND_MESSAGE)] == [(stuck.id,)]
    committed.expire_all()
    assert committed.get(Message, stuck.id).status == "sending"
