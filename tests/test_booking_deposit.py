"""Every booking follows the shop's deposit rule: staff bookings ask for the deposit by
SMS and are released when unpaid; the desk and a waiver need a reason; confirmations
carry the manage link; staff cancellations and moves tell the customer."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from recovery.availability.overlap import SlotTaken
from recovery.booking import cancellation, create, holds
from recovery.effects import EffectKind
from recovery.errors import InvalidTransition
from recovery.messaging.outbox import Purpose
from recovery.models import (
    Appointment,
    AppointmentStatus,
    DepositKind,
    Message,
    Payment,
    PaymentStatus,
    SlotOpening,
)
from tests import factories as f


@pytest.fixture
def world(session, clock):
    shop = f.shop(session)
    chair = f.resource(session, shop)
    colour = f.service(session, shop, deposit_kind=DepositKind.FIXED, deposit_value=2000)
    trim = f.service(session, shop, deposit_kind=DepositKind.NONE, deposit_value=0)
    customer = f.customer(session, shop)
    staff = f.staff(session, shop)
    return shop, chair, colour, trim, customer, staff


def texts_to(session, customer) -> list[Message]:
    return list(
        session.scalars(
            select(Message).where(Message.customer_id == customer.id).order_by(Message.id)
        )
    )


def book(session, world, service, starts_at):
    shop, chair, _, _, customer, _ = world
    return create.create_booking(
        session, shop.id, customer.id, service.id, chair.id, starts_at, now=None
    )


def test_a_booking_with_a_deposit_waits_for_it_and_texts_the_pay_link(
    session, world, clock, recorder
):
    _shop, _, colour, _, customer, _ = world
    starts = clock.now + timedelta(days=3)
    appt = book(session, world, colour, starts)
    session.commit()

    assert appt.status == AppointmentStatus.PENDING_PAYMENT
    payment = session.scalars(select(Payment).where(Payment.appointment_id == appt.id)).one()
    assert (payment.amount_minor, payment.status) == (2000, PaymentStatus.PENDING)
    assert appt.payment_due_at == clock.now + timedelta(hours=24)  # the shop's default hold
    [text] = texts_to(session, customer)
    assert text.purpose == Purpose.PAYMENT_REQUEST and text.appointment_id == appt.id
    assert "£20" in text.body and f"/pay/{payment.token}" in text.body
    assert "booking on Thursday at 09:00, pay £20 by tomorrow at 09:00:" in text.body
    assert "CANCEL" not in text.body.upper().replace("CANCELLED", "")
    assert [e.at for e in recorder.of_kind(EffectKind.RELEASE_HOLD)] == [appt.payment_due_at]


def test_the_hold_never_runs_past_the_start(session, world, clock):
    _, _, colour, _, _, _ = world
    shop, _, _, _, customer, _ = world
    shop.booking_hold_hours = 2
    appt = book(session, world, colour, clock.now + timedelta(hours=5))
    assert appt.payment_due_at == clock.now + timedelta(hours=2)
    assert "pay £20 by 11:00 today:" in texts_to(session, customer)[-1].body

    soon = book(session, world, colour, clock.now + timedelta(hours=1))
    assert soon.payment_due_at == soon.starts_at
    assert "booking today at 10:00, pay £20 before then:" in texts_to(session, customer)[-1].body


def test_unpaid_by_the_deadline_the_booking_is_released_and_the_customer_told(
    session, world, clock, driver
):
    _, chair, colour, _, customer, _ = world
    appt = book(session, world, colour, clock.now + timedelta(days=3))
    session.commit()
    clock.advance(hours=24, seconds=1)
    driver.run_due()
    session.expire_all()
    appt = session.get(Appointment, appt.id)
    assert appt.status == AppointmentStatus.CANCELLED
    assert appt.payments[0].status == PaymentStatus.CANCELED
    assert session.scalar(select(SlotOpening)) is None  # never paid: nothing to recover
    released = texts_to(session, customer)[-1]
    assert released.purpose == Purpose.RELEASED and "wasn't paid in time" in released.body
    # The time is free again for someone else.
    other = f.customer(session, world[0])
    again = create.create_booking(
        session, world[0].id, other.id, colour.id, chair.id, appt.starts_at
    )
    assert again.status == AppointmentStatus.PENDING_PAYMENT


def test_no_deposit_books_at_once_with_a_confirmation_and_manage_link(session, world, clock):
    _, _, _, trim, customer, _ = world
    appt = book(session, world, trim, clock.now + timedelta(days=2))
    assert appt.status == AppointmentStatus.BOOKED
    [text] = texts_to(session, customer)
    assert text.purpose == Purpose.BOOKED
    assert f"/b/{appt.manage_token}" in text.body and "Payment received" not in text.body
    assert len(appt.manage_token) >= 22  # 128 random bits, URL-safe


def test_paying_confirms_with_the_manage_link(session, world, clock):
    _, _, colour, _, customer, _ = world
    appt = book(session, world, colour, clock.now + timedelta(days=3))
    assert holds.confirm_payment(session, appt.payments[0].id, clock.now) == "booked"
    assert appt.status == AppointmentStatus.BOOKED and appt.payment_due_at is None
    text = texts_to(session, customer)[-1]
    assert text.body.startswith(f"{world[0].name}: Payment received. You're booked")
    assert f"/b/{appt.manage_token}" in text.body and text.segments == 1


def test_confirmations_can_be_switched_off(session, world, clock):
    shop, _, _, trim, customer, _ = world
    shop.send_confirmations = False
    appt = book(session, world, trim, clock.now + timedelta(days=2))
    assert appt.status == AppointmentStatus.BOOKED
    assert texts_to(session, customer) == []


def test_paid_at_the_desk_needs_a_reason_is_kept_and_counts_as_paid(
    session, world, clock, recorder
):
    _, _, colour, _, _customer, staff = world
    appt = book(session, world, colour, clock.now + timedelta(days=3))
    with pytest.raises(InvalidTransition, match="reason"):
        holds.pay_at_desk(session, appt.id, staff.id, "  ", clock.now)
    desk = holds.pay_at_desk(session, appt.id, staff.id, "cash at the till", clock.now)
    assert appt.status == AppointmentStatus.BOOKED
    assert (desk.provider, desk.status, desk.amount_minor) == ("desk", "succeeded", 2000)
    assert (desk.recorded_by_id, desk.note, desk.succeeded_at) == (
        staff.id,
        "cash at the till",
        clock.now,
    )
    online = [p for p in appt.payments if p.provider != "desk"]
    assert [p.status for p in online] == [PaymentStatus.CANCELED]
    with pytest.raises(InvalidTransition):
        holds.waive_deposit(session, appt.id, staff.id, "twice", clock.now)
    # Paid at the desk counts as paid: cancelling it opens a slot for recovery.
    result = cancellation.cancel_appointment(session, appt.id, now=clock.now)
    assert result.opening is not None


def test_a_waived_deposit_books_but_opens_no_slot_when_cancelled(session, world, clock):
    _, _, colour, _, _customer, staff = world
    appt = book(session, world, colour, clock.now + timedelta(days=3))
    holds.waive_deposit(session, appt.id, staff.id, "regular, trusted", clock.now)
    assert appt.status == AppointmentStatus.BOOKED
    assert (appt.deposit_waived_by_id, appt.deposit_waived_reason) == (staff.id, "regular, trusted")
    assert appt.deposit_waived_at == clock.now
    result = cancellation.cancel_appointment(session, appt.id, now=clock.now)
    assert result.opening is None and "not paid" in result.note


def test_a_busy_resource_is_refused(session, world, clock):
    _, _, colour, trim, _, _ = world
    starts = clock.now + timedelta(days=2)
    book(session, world, trim, starts)
    with pytest.raises(SlotTaken):
        book(session, world, colour, starts + timedelta(minutes=10))


def test_a_staff_cancellation_tells_the_customer_without_asking_for_a_reply(session, world, clock):
    _, _, _, trim, customer, _ = world
    appt = book(session, world, trim, clock.now + timedelta(days=2))
    cancellation.cancel_appointment(session, appt.id, reason="shop closed", now=clock.now)
    text = texts_to(session, customer)[-1]
    assert text.purpose == Purpose.CANCELLED and "is cancelled" in text.body
    assert "reply" not in text.body.lower()


def test_moving_a_booking_tells_the_customer_the_new_time(session, world, clock):
    _, _chair, _, trim, customer, _ = world
    appt = book(session, world, trim, clock.now + timedelta(days=2))
    other_chair = f.resource(session, world[0])
    create.move_booking(session, appt.id, appt.starts_at + timedelta(hours=2), other_chair.id)
    assert appt.resource_id == other_chair.id
    text = texts_to(session, customer)[-1]
    assert text.purpose == Purpose.CHANGED and "has moved to" in text.body
    assert f"/b/{appt.manage_token}" in text.body
    # The same time again is no move: no text.
    count = len(texts_to(session, customer))
    create.move_booking(session, appt.id, appt.starts_at, other_chair.id)
    assert len(texts_to(session, customer)) == count
