"""One sender number, many shops: two shops with no number of their own text from the
deployment's default, and one phone is a customer of both. A reply to that number acts on
the one live offer of that phone there, in the shop that made it, and never on the other
shop's records."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from recovery.booking import cancellation
from recovery.messaging.gateway import SANDBOX_FROM_NUMBER
from recovery.messaging.outbox import default_sender
from recovery.models import (
    Appointment,
    AppointmentStatus,
    Customer,
    Message,
    OfferStatus,
    OpeningStatus,
    SlotOffer,
    SlotOpening,
)
from recovery.offers import offering, openings
from tests import factories as f
from tests.scenario import Scene, scene
from tests.twilio_signing import new_sid, reply_text, signed_post

PHONE = "+447911288888"  # a customer of both shops


@dataclass
class Shared:
    first: Scene  # offers the shared phone first
    second: Scene  # must skip it
    first_customer: Customer  # the shared phone at the first shop
    second_customer: Customer  # the shared phone at the second shop
    first_opening: SlotOpening
    second_opening: SlotOpening


@pytest.fixture
def shared(session, clock, recorder) -> Shared:
    now = clock.now
    first = scene(session, now, name="First Shop", sms_from_number=None)
    second = scene(session, now, name="Second Shop", sms_from_number=None)
    # The second shop knew the phone first (the lower id), so "the first customer found"
    # would be the wrong shop: only the live offer can say which shop a reply is for.
    recent = now - timedelta(hours=1)  # the most recently settled: first in line
    second_customer = f.customer(session, second.shop, phone=PHONE, last_settled_at=recent)
    first_customer = f.customer(session, first.shop, phone=PHONE, last_settled_at=recent)
    first_opening = cancellation.cancel_appointment(session, first.booking.id, now=now).opening
    second_opening = cancellation.cancel_appointment(session, second.booking.id, now=now).opening
    session.commit()
    return Shared(first, second, first_customer, second_customer, first_opening, second_opening)


def rows_of(session, shop_id: int) -> dict:
    """Everything of a shop that a reply could touch."""
    session.expire_all()
    return {
        "openings": session.execute(
            select(SlotOpening.id, SlotOpening.status, SlotOpening.filled_at)
            .where(SlotOpening.shop_id == shop_id)
            .order_by(SlotOpening.id)
        ).all(),
        "offers": session.execute(
            select(SlotOffer.id, SlotOffer.customer_id, SlotOffer.status, SlotOffer.responded_at)
            .join(SlotOpening)
            .where(SlotOpening.shop_id == shop_id)
            .order_by(SlotOffer.id)
        ).all(),
        "appointments": session.execute(
            select(Appointment.id, Appointment.status, Appointment.customer_id)
            .where(Appointment.shop_id == shop_id)
            .order_by(Appointment.id)
        ).all(),
        "customers": session.execute(
            select(Customer.id, Customer.opted_out_at, Customer.sms_opt_in)
            .where(Customer.shop_id == shop_id)
            .order_by(Customer.id)
        ).all(),
        "messages": session.execute(
            select(Message.id, Message.status, Message.customer_id)
            .where(Message.shop_id == shop_id)
            .order_by(Message.id)
        ).all(),
    }


def offer_both(session, clock, s: Shared) -> tuple[SlotOffer, SlotOffer]:
    assert offering.offer_next(session, s.first_opening.id, now=clock.now) == "offered"
    assert offering.offer_next(session, s.second_opening.id, now=clock.now) == "offered"
    session.commit()
    return (
        openings.live_offer(session, s.first_opening.id),
        openings.live_offer(session, s.second_opening.id),
    )


def test_both_shops_send_from_the_default_number(app, shared):
    assert default_sender() == SANDBOX_FROM_NUMBER  # no TWILIO_FROM_NUMBER in the tests
    assert shared.first.shop.sms_from_number is None
    assert shared.second.shop.sms_from_number is None


def test_the_database_refuses_a_second_live_offer_for_the_phone_on_the_number(
    session, clock, shared
):
    offering.offer_next(session, shared.first_opening.id, now=clock.now)
    live = openings.live_offer(session, shared.first_opening.id)
    assert live.customer_id == shared.first_customer.id
    assert (live.phone, live.sender_number) == (PHONE, SANDBOX_FROM_NUMBER)
    # Straight into the table, past eligibility: the partial unique index says no.
    with pytest.raises(IntegrityError) as refused, session.begin_nested():
        session.add(
            SlotOffer(
                slot_opening_id=shared.second_opening.id,
                customer_id=shared.second_customer.id,
                phone=PHONE,
                sender_number=SANDBOX_FROM_NUMBER,
                status=OfferStatus.SENT,
                sent_at=clock.now,
                expires_at=clock.now + timedelta(minutes=15),
            )
        )
        session.flush()
    assert "uq_slot_offers_live_per_phone_sender" in str(refused.value)


def test_the_second_shop_skips_the_phone_and_offers_someone_else(session, clock, shared):
    first_offer, second_offer = offer_both(session, clock, shared)
    assert first_offer.customer_id == shared.first_customer.id
    # The shared phone would be first in line at the second shop too; it is skipped.
    assert second_offer.customer_id == shared.second.customers[0].id
    assert second_offer.phone != PHONE
    offered = session.scalars(
        select(SlotOffer).where(SlotOffer.customer_id == shared.second_customer.id)
    ).all()
    assert offered == []


def test_yes_wins_only_the_offering_shops_opening(client, session, clock, shared):
    first_offer, second_offer = offer_both(session, clock, shared)
    second_before = rows_of(session, shared.second.shop.id)
    sid = new_sid()

    response = signed_post(client, "YES", PHONE, to=SANDBOX_FROM_NUMBER, sid=sid)

    assert response.status_code == 200
    assert "Pay the £20 within 15 min" in reply_text(response)
    session.expire_all()
    # The first shop: its opening is won and held for a booking of its own customer.
    assert session.get(SlotOffer, first_offer.id).status == OfferStatus.ACCEPTED
    assert session.get(SlotOpening, shared.first_opening.id).status == OpeningStatus.FILLED
    held = openings.held_booking(session, shared.first_opening.id)
    assert held.shop_id == shared.first.shop.id
    assert held.customer_id == shared.first_customer.id
    assert held.status == AppointmentStatus.PENDING_PAYMENT
    # The second shop: nothing changed, not a row.
    assert rows_of(session, shared.second.shop.id) == second_before
    assert session.get(SlotOffer, second_offer.id).status == OfferStatus.SENT
    assert session.get(SlotOpening, shared.second_opening.id).status == OpeningStatus.OPEN
    # The text in and the answer are the first shop's, under its customer.
    inbound = session.scalar(select(Message).where(Message.provider_sid == sid))
    assert (inbound.shop_id, inbound.customer_id) == (
        shared.first.shop.id,
        shared.first_customer.id,
    )
    answer = session.scalar(
        select(Message).where(
            Message.purpose == "reply", Message.to_number == PHONE, Message.id > inbound.id
        )
    )
    assert (answer.shop_id, answer.customer_id) == (
        shared.first.shop.id,
        shared.first_customer.id,
    )


def test_no_declines_only_the_offering_shops_offer(client, session, clock, shared):
    first_offer, _ = offer_both(session, clock, shared)
    second_before = rows_of(session, shared.second.shop.id)
    sid = new_sid()
    answer = reply_text(signed_post(client, "no", PHONE, to=SANDBOX_FROM_NUMBER, sid=sid))
    assert answer == "OK, no problem. We'll offer it to someone else."
    session.expire_all()
    assert session.get(SlotOffer, first_offer.id).status == OfferStatus.DECLINED
    assert rows_of(session, shared.second.shop.id) == second_before
    inbound = session.scalar(select(Message).where(Message.provider_sid == sid))
    assert inbound.shop_id == shared.first.shop.id


def test_stop_opts_the_number_out_at_both_shops_and_is_filed_with_the_offer(
    client, session, clock, shared
):
    first_offer, second_offer = offer_both(session, clock, shared)
    sid = new_sid()
    answer = reply_text(signed_post(client, "STOP", PHONE, to=SANDBOX_FROM_NUMBER, sid=sid))
    assert answer.startswith("First Shop") and "unsubscribed" in answer
    session.expire_all()
    # Carrier rules: STOP to a number stops every shop that texts from it.
    for customer in (shared.first_customer, shared.second_customer):
        customer = session.get(Customer, customer.id)
        assert customer.opted_out_at is not None and not customer.sms_opt_in
    assert session.get(SlotOffer, first_offer.id).status == OfferStatus.DECLINED
    assert session.get(SlotOffer, second_offer.id).status == OfferStatus.SENT
    inbound = session.scalar(select(Message).where(Message.provider_sid == sid))
    assert (inbound.shop_id, inbound.customer_id) == (
        shared.first.shop.id,
        shared.first_customer.id,
    )


def test_a_yes_to_another_number_does_not_reach_the_offer(client, session, clock, shared):
    first_offer, _ = offer_both(session, clock, shared)
    f.shop(session, name="Own Number", sms_from_number="+447700900123")
    session.commit()
    answer = reply_text(signed_post(client, "YES", PHONE, to="+447700900123"))
    assert answer.startswith("Sorry, we don't recognise this number")
    session.expire_all()
    assert session.get(SlotOffer, first_offer.id).status == OfferStatus.SENT


def opted_in(session, customer: Customer) -> bool:
    session.expire_all()
    row = session.get(Customer, customer.id)
    return row.opted_out_at is None and row.sms_opt_in


def test_start_opts_back_in_only_behind_the_number_it_texted(client, session, clock, shared):
    """The phone is also a customer of a shop with its own number. STOP to each number,
    then START to the shared one: the two shops behind it have the phone back, the shop
    with its own number keeps it opted out until START is sent there."""
    own = scene(session, clock.now, name="Own Number", sms_from_number="+447700900123")
    own_customer = f.customer(session, own.shop, phone=PHONE)
    session.commit()
    signed_post(client, "STOP", PHONE, to=SANDBOX_FROM_NUMBER)
    signed_post(client, "STOP", PHONE, to="+447700900123")
    for customer in (shared.first_customer, shared.second_customer, own_customer):
        assert not opted_in(session, customer)

    answer = reply_text(signed_post(client, "UNSTOP", PHONE, to=SANDBOX_FROM_NUMBER))

    assert "subscribed again" in answer
    assert opted_in(session, shared.first_customer)
    assert opted_in(session, shared.second_customer)
    assert not opted_in(session, own_customer)  # it said STOP to that shop, and no START

    assert "subscribed again" in reply_text(signed_post(client, "start", PHONE, to="+447700900123"))
    assert opted_in(session, own_customer)


def test_a_late_yes_is_filed_under_the_shop_whose_offer_it_answered(client, session, clock, shared):
    """No offer is live any more, so the answer comes from the latest offer on the number,
    the first shop's; the text is filed there, not under the phone's first customer found
    (the second shop's, the lower id)."""
    first_offer, _ = offer_both(session, clock, shared)
    signed_post(client, "NO", PHONE, to=SANDBOX_FROM_NUMBER)  # the offer is settled
    assert shared.second_customer.id < shared.first_customer.id
    sid = new_sid()

    answer = reply_text(signed_post(client, "YES", PHONE, to=SANDBOX_FROM_NUMBER, sid=sid))

    assert answer.startswith("You have no open offer")
    session.expire_all()
    assert session.get(SlotOffer, first_offer.id).status == OfferStatus.DECLINED
    inbound = session.scalar(select(Message).where(Message.provider_sid == sid))
    assert (inbound.shop_id, inbound.customer_id) == (
        shared.first.shop.id,
        shared.first_customer.id,
    )
