"""The catch-up after an outage: due offers expired and their openings offered on in
batches, set-based, by sweeps running in parallel on real PostgreSQL."""

from __future__ import annotations

import threading
from datetime import timedelta

from sqlalchemy import func, select, update

from jobs.dispatch import RQDispatcher
from recovery.booking import cancellation
from recovery.db import db, utcnow
from recovery.effects import Effect, EffectKind
from recovery.models import Message, OfferStatus, OpeningStatus, SlotOffer, SlotOpening
from recovery.offers import offering
from recovery.sweep import catch_up_offers, sweep
from tests import factories as f
from tests.support import RecordingDispatcher, installed

SHOPS, OPENINGS, CUSTOMERS = 3, 8, 30


def due_offers(session) -> list[int]:
    """SHOPS shops, each with OPENINGS openings offered to its first customers, whose texts
    went out 20 minutes ago and whose offers are now due (their exact-time jobs lost)."""
    now = utcnow()
    openings = []
    for s in range(SHOPS):
        shop = f.shop(session, name=f"Shop {s}", cooldown_hours=24)
        service = f.service(session, shop)
        owner = f.customer(session, shop, name="Owner")
        for i in range(CUSTOMERS):
            f.customer(session, shop, last_settled_at=now - timedelta(days=i + 1))
        for _ in range(OPENINGS):
            chair = f.resource(session, shop)
            booking = f.appointment(
                session, chair, owner, service, starts_at=now + timedelta(days=2), paid=True
            )
            openings.append(cancellation.cancel_appointment(session, booking.id, now=now).opening)
    offering.offer_next_many(session, [o.id for o in openings], now)
    then = now - timedelta(minutes=20)
    session.execute(update(Message).values(status="sent", sent_at=then))
    session.execute(update(SlotOffer).values(sent_at=then, expires_at=then + timedelta(minutes=15)))
    session.commit()
    return [o.id for o in openings]


def live_offers(session) -> list[SlotOffer]:
    session.expire_all()
    return list(session.scalars(select(SlotOffer).where(SlotOffer.status == OfferStatus.SENT)))


def test_a_batch_offers_each_shops_openings_to_different_customers_in_order(
    app, committed, recorder
):
    opening_ids = due_offers(committed)
    first = {o.slot_opening_id: o.customer_id for o in live_offers(committed)}
    assert len(first) == len(opening_ids)
    # In one shop, its openings went to its first customers in eligibility order, one each.
    shop_of = dict(committed.execute(select(SlotOpening.id, SlotOpening.shop_id)).all())
    for shop_id in set(shop_of.values()):
        customers = [first[o] for o in sorted(first) if shop_of[o] == shop_id]
        assert len(set(customers)) == OPENINGS

    assert catch_up_offers(committed, utcnow, batch=10) == len(opening_ids)

    after = {o.slot_opening_id: o.customer_id for o in live_offers(committed)}
    assert sorted(after) == sorted(opening_ids)  # every opening offered on, once
    assert not set(after.values()) & set(first.values())  # to customers not offered yet
    texts = committed.scalar(
        select(func.count()).select_from(Message).where(Message.status == "queued")
    )
    assert texts == len(opening_ids)


def test_two_sweeps_in_parallel_split_the_due_offers(app, committed):
    """Two workers' catch-ups at once, in small batches: each due offer is expired by one
    of them, each opening gets exactly one next offer, and both did part of the work."""
    with installed(app, "recovery.dispatcher", RecordingDispatcher()):
        opening_ids = due_offers(committed)
        done: list[int] = []
        start = threading.Barrier(2)

        def catch_up() -> None:
            with app.app_context():
                start.wait()
                done.append(catch_up_offers(db.session, utcnow, batch=3))

        threads = [threading.Thread(target=catch_up) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)

    assert sum(done) == len(opening_ids) and min(done) > 0, done
    offers = live_offers(committed)
    assert sorted(o.slot_opening_id for o in offers) == sorted(opening_ids)
    assert len({o.customer_id for o in offers}) == len(offers)
    expired = committed.scalar(
        select(func.count()).select_from(SlotOffer).where(SlotOffer.status == "expired")
    )
    assert expired == len(opening_ids)
    still_open = committed.scalar(
        select(func.count()).select_from(SlotOpening).where(SlotOpening.status == "open")
    )
    assert still_open == len(opening_ids)


def test_a_full_first_batch_asks_another_worker_to_help(app, committed, recorder):
    due_offers(committed)
    recorder.clear()
    sweep(committed, utcnow, batch=5)
    assert recorder.of_kind(EffectKind.CATCH_UP_OFFERS)
    assert len(live_offers(committed)) == SHOPS * OPENINGS
    assert committed.scalar(select(func.count()).select_from(SlotOpening)) == SHOPS * OPENINGS
    assert {s for (s,) in committed.execute(select(SlotOpening.status))} == {OpeningStatus.OPEN}


def test_a_job_without_retries_is_queued(app, redis_conn):
    """The catch-up has no retry (the next sweep is its retry): it still goes to the queue."""
    RQDispatcher(app).dispatch([Effect(EffectKind.CATCH_UP_OFFERS)])
    assert redis_conn.llen("rq:queue:default") == 1
