"""The demo shop: seeded once, with weeks of history made by running the real loop."""

from __future__ import annotations

import re
from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from recovery.booking.holds import HOLD_EXPIRED, PAYMENT_FAILED
from recovery.db import CLOCK_EXTENSION, db
from recovery.demo.seed import DEMO_EMAIL, DEMO_PASSWORD, DEMO_SHOP, seed_demo
from recovery.models import (
    Appointment,
    Message,
    MessageStatus,
    OfferStatus,
    OpeningStatus,
    Payment,
    PaymentStatus,
    Refund,
    RefundStatus,
    Shop,
    SlotOffer,
    SlotOpening,
)
from tests.admin_support import login


@pytest.fixture
def demo(app, session, clock, recorder) -> Shop:
    login_ = seed_demo(session, now=clock.now)
    session.commit()
    assert login_.created
    return session.scalar(select(Shop).where(Shop.name == DEMO_SHOP))


def rows(session, model, *where):
    return session.scalars(select(model).where(*where)).all()


def bookings_of(session, opening: SlotOpening) -> list[Appointment]:
    return session.scalars(
        select(Appointment)
        .where(Appointment.source_slot_opening_id == opening.id)
        .order_by(Appointment.created_at)
    ).all()


def test_the_history_is_made_by_the_loop_in_the_past_weeks(app, session, clock, recorder, demo):
    now = clock.now
    since = now - timedelta(days=35)  # bookings were made up to two weeks before cancelling
    openings = rows(session, SlotOpening, SlotOpening.shop_id == demo.id)
    by_status = Counter(o.status for o in openings)
    assert len(openings) >= 20
    assert by_status[OpeningStatus.FILLED] >= 15
    assert by_status[OpeningStatus.EXPIRED] >= 2
    assert by_status[OpeningStatus.OPEN] == 0  # every slot has started: nothing is left open
    for opening in openings:
        assert now - timedelta(days=23) <= opening.created_at < opening.starts_at < now
        source = session.get(Appointment, opening.source_appointment_id)
        assert source.status == "cancelled" and source.cancelled_at == opening.created_at

    # Each filled opening holds one confirmed booking, won after the cancellation.
    for opening in (o for o in openings if o.status == OpeningStatus.FILLED):
        held = bookings_of(session, opening)
        assert held[-1].status == "booked"
        assert opening.created_at < opening.filled_at == held[-1].created_at
        assert [a.status for a in held[:-1]] == ["cancelled"] * (len(held) - 1)
    # Too close to the start: offered to whoever could be asked, then given up.
    for opening in (o for o in openings if o.status == OpeningStatus.EXPIRED):
        assert opening.outcome_note == "too close to the start to offer"
        assert rows(session, SlotOffer, SlotOffer.slot_opening_id == opening.id)

    def lost_then_filled(reason: str, payment_status: str) -> list[SlotOpening]:
        found = []
        for opening in openings:
            held = bookings_of(session, opening)
            first = held[0] if held else None
            if (
                opening.status == OpeningStatus.FILLED
                and len(held) >= 2
                and first.cancellation_reason == reason
                and [p.status for p in first.payments] == [payment_status]
                and held[-1].created_at > first.cancelled_at
            ):
                found.append(opening)
        return found

    assert len(lost_then_filled(PAYMENT_FAILED, PaymentStatus.FAILED)) >= 2
    assert len(lost_then_filled(HOLD_EXPIRED, PaymentStatus.CANCELED)) >= 1
    # And one that a failed payment reopened too late for anyone else.
    assert any(
        o.status == OpeningStatus.EXPIRED
        and any(a.cancellation_reason == PAYMENT_FAILED for a in bookings_of(session, o))
        for o in openings
    )

    ids = [o.id for o in openings]
    offers = rows(session, SlotOffer, SlotOffer.slot_opening_id.in_(ids))
    statuses = Counter(o.status for o in offers)
    for status in (OfferStatus.ACCEPTED, OfferStatus.DECLINED, OfferStatus.EXPIRED):
        assert statuses[status] >= 3, statuses
    assert statuses[OfferStatus.SENT] == 0
    assert all(since <= o.sent_at < now for o in offers)

    messages = rows(session, Message, Message.shop_id == demo.id)
    assert {m.status for m in messages} == {MessageStatus.SENT, MessageStatus.RECEIVED}
    purposes = Counter(m.purpose for m in messages if m.status == MessageStatus.SENT)
    for purpose in ("offer", "reply", "booked", "released", "refunded", "reminder"):
        assert purposes[purpose] >= 1, purposes
    assert Counter(m.body for m in messages if m.purpose == "inbound").keys() & {"YES", "NO"}
    assert all(since <= m.created_at < now for m in messages)
    assert all(since <= m.sent_at < now for m in messages if m.status == MessageStatus.SENT)

    payments = session.scalars(
        select(Payment).join(Appointment).where(Appointment.shop_id == demo.id)
    ).all()
    succeeded = [p for p in payments if p.status == PaymentStatus.SUCCEEDED]
    assert len([p for p in succeeded if p.succeeded_at is not None]) >= 15
    assert all(since <= p.succeeded_at < now for p in succeeded if p.succeeded_at)
    assert all(since <= p.created_at <= now for p in payments)
    refunds = session.scalars(
        select(Refund).where(Refund.payment_id.in_([p.id for p in payments]))
    ).all()
    assert refunds and {r.status for r in refunds} == {RefundStatus.SUCCEEDED}

    # The history ran every effect itself: nothing was left for the app's dispatcher, and
    # the app's own clock is back.
    assert recorder.effects == []
    assert app.extensions[CLOCK_EXTENSION] is clock


def table_counts(session) -> dict[str, int]:
    return {
        table.name: session.scalar(select(func.count()).select_from(table))
        for table in db.metadata.sorted_tables
    }


def test_seeding_again_adds_nothing(session, clock, demo):
    before = table_counts(session)
    assert before["slot_openings"] and before["messages"] and before["payments"]
    clock.advance(days=1)
    again = seed_demo(session, now=clock.now)
    session.commit()
    assert not again.created
    assert table_counts(session) == before


def metric(page: str, key: str) -> str:
    return re.search(rf'data-metric="{key}">([^<]*)<', page).group(1).strip()


def test_the_dashboard_shows_what_was_recovered_this_week(app, demo):
    client = app.test_client()
    assert login(client, DEMO_EMAIL, DEMO_PASSWORD).status_code == 302
    page = client.get("/admin/").get_data(as_text=True)
    assert int(metric(page, "recovered")) > 0
    rate = metric(page, "rate")
    assert rate.endswith("%") and int(rate[:-1]) > 0
    assert re.fullmatch(r"\d+ min|\d+ h \d\d min|\d+ s", metric(page, "median"))
    revenue = metric(page, "revenue")
    assert revenue.startswith("£") and revenue != "£0"
    assert int(metric(page, "sms")) > 0
