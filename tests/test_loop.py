"""The loop's transitions, one at a time, on real PostgreSQL (rolled back after each test)."""

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from recovery.booking import cancellation, holds
from recovery.effects import EffectKind
from recovery.models import (
    Appointment,
    Message,
    OfferStatus,
    OpeningStatus,
    SlotOffer,
    SlotOpening,
)
from recovery.offers import accepting, offering, openings
from tests import factories as f
from tests.scenario import scene, send_texts


def count(session, model, *where) -> int:
    return session.scalar(select(func.count()).select_from(model).where(*where))


@pytest.fixture
def s(session, clock):
    return scene(session, clock.now)


def cancel(session, s, clock):
    result = cancellation.cancel_appointment(
        session, s.booking.id, reason="customer called", now=clock.now
    )
    session.commit()
    return result


def test_cancelling_a_paid_future_booking_opens_one_slot(session, s, clock, recorder):
    result = cancel(session, s, clock)
    assert result.opening is not None and result.opening.status == OpeningStatus.OPEN
    assert (result.opening.starts_at, result.opening.resource_id) == (
        s.booking.starts_at,
        s.chair.id,
    )
    assert recorder.of_kind(EffectKind.OFFER_NEXT)[0].args == (result.opening.id,)
    assert s.booking.recovery_note == f"slot opening #{result.opening.id} created"


def test_cancelling_twice_still_one_opening(session, s, clock, recorder):
    first = cancel(session, s, clock)
    again = cancel(session, s, clock)
    assert again.opening.id == first.opening.id
    assert count(session, SlotOpening) == 1
    assert len(recorder.of_kind(EffectKind.OFFER_NEXT)) == 1


def test_unpaid_booking_opens_nothing_and_says_why(session, s, clock, recorder):
    unpaid = f.appointment(
        session, s.chair, s.owner, s.service, starts_at=clock.now + timedelta(days=3)
    )
    result = cancellation.cancel_appointment(session, unpaid.id, now=clock.now)
    assert result.opening is None
    assert unpaid.recovery_note == "no slot opened: the booking was not paid"
    assert recorder.effects == []


def test_past_booking_opens_nothing(session, s, clock):
    past = f.appointment(
        session, s.chair, s.owner, s.service, starts_at=clock.now - timedelta(hours=2), paid=True
    )
    result = cancellation.cancel_appointment(session, past.id, now=clock.now)
    assert result.opening is None
    assert past.recovery_note == "no slot opened: the booking time has passed"


def test_booking_inside_the_lead_time_opens_nothing(session, s, clock):
    soon = f.appointment(
        session, s.chair, s.owner, s.service, starts_at=clock.now + timedelta(minutes=45), paid=True
    )
    result = cancellation.cancel_appointment(session, soon.id, now=clock.now)
    assert result.opening is None
    assert "60-minute lead time" in soon.recovery_note


def test_no_deposit_booking_counts_as_paid(session, s, clock):
    free = f.service(session, s.shop, deposit_kind="none", deposit_value=0)
    booking = f.appointment(
        session, s.chair, s.owner, free, starts_at=clock.now + timedelta(days=4)
    )
    assert cancellation.cancel_appointment(session, booking.id, now=clock.now).opening is not None


def test_offer_next_offers_the_first_eligible_and_queues_the_sms(session, s, clock, recorder):
    opening = cancel(session, s, clock).opening
    assert offering.offer_next(session, opening.id, now=clock.now) == offering.OfferOutcome.OFFERED
    session.commit()
    offer = session.scalar(select(SlotOffer))
    assert offer.customer_id == s.customers[0].id
    assert offer.status == OfferStatus.SENT
    assert offer.expires_at == clock.now + timedelta(minutes=15)
    message = session.scalar(select(Message).where(Message.slot_offer_id == offer.id))
    assert message.status == "queued" and message.to_number == s.customers[0].phone
    assert "A slot opened tomorrow at 09:00. Reply YES to book. £20 deposit applies." in (
        message.body
    )
    assert (message.id,) in [e.args for e in recorder.of_kind(EffectKind.SEND_MESSAGE)]
    expiry = recorder.of_kind(EffectKind.EXPIRE_OFFER)[0]
    assert expiry.args == (offer.id,) and expiry.at == offer.expires_at


def test_offer_next_is_idempotent_while_an_offer_is_live(session, s, clock):
    opening = cancel(session, s, clock).opening
    offering.offer_next(session, opening.id, now=clock.now)
    assert offering.offer_next(session, opening.id, now=clock.now) == (
        offering.OfferOutcome.ALREADY_LIVE
    )
    assert count(session, SlotOffer) == 1


def test_expiry_moves_to_the_next_customer(session, s, clock):
    opening = cancel(session, s, clock).opening
    offering.offer_next(session, opening.id, now=clock.now)
    send_texts(session)
    first = session.scalar(select(SlotOffer))
    assert offering.expire_offer(session, first.id, now=clock.now) == "not due yet"
    clock.advance(minutes=15)
    offering.expire_offer(session, first.id, now=clock.now)
    assert first.status == OfferStatus.EXPIRED
    live = openings.live_offer(session, opening.id)
    assert live.customer_id == s.customers[1].id


def test_no_one_left_expires_the_opening(session, clock):
    s = scene(session, clock.now, n_customers=1)
    opening = cancel(session, s, clock).opening
    offering.offer_next(session, opening.id, now=clock.now)
    send_texts(session)
    clock.advance(minutes=16)
    offering.expire_offer(session, openings.live_offer(session, opening.id).id, now=clock.now)
    assert opening.status == OpeningStatus.EXPIRED
    assert opening.outcome_note == "no eligible customers left"


def test_opening_expires_once_inside_the_lead_time(session, s, clock):
    opening = cancel(session, s, clock).opening
    clock.advance(hours=23, minutes=1)  # 59 minutes before the start
    assert offering.offer_next(session, opening.id, now=clock.now) == offering.OfferOutcome.EXPIRED
    assert opening.outcome_note == "too close to the start to offer"


def test_decline_asks_for_the_next_offer_after_the_commit(session, s, clock, recorder):
    opening = cancel(session, s, clock).opening
    offering.offer_next(session, opening.id, now=clock.now)
    first = openings.live_offer(session, opening.id)
    recorder.clear()
    assert offering.decline_offer(session, first.id, now=clock.now)
    session.commit()
    assert first.status == OfferStatus.DECLINED and first.responded_at == clock.now
    # The next customer is offered by the job the commit asked for (``jobs.tasks``).
    assert [e.args for e in recorder.of_kind(EffectKind.OFFER_NEXT)] == [(opening.id,)]
    assert openings.live_offer(session, opening.id) is None
    offering.offer_next(session, opening.id, now=clock.now)
    assert openings.live_offer(session, opening.id).customer_id == s.customers[1].id


def test_accept_books_pending_payment_and_fills_the_opening(session, s, clock, recorder):
    opening = cancel(session, s, clock).opening
    offering.offer_next(session, opening.id, now=clock.now)
    offer = openings.live_offer(session, opening.id)
    result = accepting.accept_offer(session, offer.id, now=clock.now)
    session.commit()
    assert result.outcome is accepting.AcceptOutcome.WON
    booking = result.appointment
    assert booking.status == "pending_payment"
    assert booking.source_slot_opening_id == opening.id
    assert booking.customer_id == s.customers[0].id
    assert opening.status == OpeningStatus.FILLED and offer.status == OfferStatus.ACCEPTED
    assert result.payment.amount_minor == 2000 and result.payment.status == "pending"
    assert booking.payment_due_at == clock.now + timedelta(minutes=15)
    assert "Pay the £20 within 15 min to confirm: http://localhost/pay/" in (result.confirmation)
    hold = recorder.of_kind(EffectKind.RELEASE_HOLD)[0]
    assert hold.args == (booking.id,) and hold.at == booking.payment_due_at


def test_accept_with_no_deposit_books_at_once(session, clock):
    s = scene(session, clock.now)
    s.service.deposit_kind, s.service.deposit_value = "none", 0
    opening = cancel(session, s, clock).opening
    offering.offer_next(session, opening.id, now=clock.now)
    result = accepting.accept_offer(
        session, openings.live_offer(session, opening.id).id, now=clock.now
    )
    assert result.appointment.status == "booked" and result.payment is None
    assert "You're booked tomorrow at 09:00" in result.confirmation
    assert s.customers[0].last_settled_at == result.appointment.starts_at


def test_accepting_twice_is_answered_not_repeated(session, s, clock):
    opening = cancel(session, s, clock).opening
    offering.offer_next(session, opening.id, now=clock.now)
    offer = openings.live_offer(session, opening.id)
    accepting.accept_offer(session, offer.id, now=clock.now)
    again = accepting.accept_offer(session, offer.id, now=clock.now)
    assert again.outcome is accepting.AcceptOutcome.ALREADY_YOURS
    assert count(session, Appointment, Appointment.source_slot_opening_id == opening.id) == 1


def test_a_yes_after_expires_at_loses_even_before_the_expiry_job(session, s, clock):
    opening = cancel(session, s, clock).opening
    offering.offer_next(session, opening.id, now=clock.now)
    send_texts(session)
    offer = openings.live_offer(session, opening.id)
    clock.advance(minutes=15)
    assert accepting.accept_offer(session, offer.id, now=clock.now).outcome is (
        accepting.AcceptOutcome.EXPIRED
    )
    assert offer.status == OfferStatus.EXPIRED
    assert openings.live_offer(session, opening.id).customer_id == s.customers[1].id


def test_a_booking_made_another_way_wins_over_a_yes(session, s, clock):
    opening = cancel(session, s, clock).opening
    offering.offer_next(session, opening.id, now=clock.now)
    offer = openings.live_offer(session, opening.id)
    f.appointment(session, s.chair, s.customers[2], s.service, starts_at=opening.starts_at)
    result = accepting.accept_offer(session, offer.id, now=clock.now)
    assert result.outcome is accepting.AcceptOutcome.TAKEN
    assert opening.status == OpeningStatus.EXPIRED


def test_failed_payment_reopens_and_offers_the_next(session, s, clock):
    opening = cancel(session, s, clock).opening
    offering.offer_next(session, opening.id, now=clock.now)
    won = accepting.accept_offer(
        session, openings.live_offer(session, opening.id).id, now=clock.now
    )
    assert holds.fail_payment(session, won.payment.id, now=clock.now) == "released"
    assert won.appointment.status == "cancelled"
    assert won.payment.status == "failed"
    assert opening.status == OpeningStatus.OPEN
    assert openings.live_offer(session, opening.id).customer_id == s.customers[1].id
    released = session.scalar(select(Message).where(Message.purpose == "released"))
    assert released.to_number == s.customers[0].phone


def test_abandoned_payment_is_released_at_the_deadline_only(session, s, clock):
    opening = cancel(session, s, clock).opening
    offering.offer_next(session, opening.id, now=clock.now)
    won = accepting.accept_offer(
        session, openings.live_offer(session, opening.id).id, now=clock.now
    )
    assert not holds.release_hold(session, won.appointment.id, now=clock.now)
    clock.advance(minutes=15)
    assert holds.release_hold(session, won.appointment.id, now=clock.now)
    assert won.payment.status == "canceled" and opening.status == OpeningStatus.OPEN


def test_payment_confirms_the_booking(session, s, clock):
    opening = cancel(session, s, clock).opening
    offering.offer_next(session, opening.id, now=clock.now)
    won = accepting.accept_offer(
        session, openings.live_offer(session, opening.id).id, now=clock.now
    )
    assert holds.confirm_payment(session, won.payment.id, now=clock.now) == "booked"
    assert holds.confirm_payment(session, won.payment.id, now=clock.now) == "already succeeded"
    assert won.appointment.status == "booked" and opening.status == OpeningStatus.FILLED
    assert s.customers[0].last_settled_at == won.appointment.starts_at
    assert count(session, Message, Message.purpose == "booked") == 1


def test_cancelling_a_recovered_booking_reopens_its_opening(session, s, clock):
    opening = cancel(session, s, clock).opening
    offering.offer_next(session, opening.id, now=clock.now)
    won = accepting.accept_offer(
        session, openings.live_offer(session, opening.id).id, now=clock.now
    )
    holds.confirm_payment(session, won.payment.id, now=clock.now)
    again = cancellation.cancel_appointment(session, won.appointment.id, now=clock.now)
    assert again.opening.id == opening.id and opening.status == OpeningStatus.OPEN


def test_several_openings_never_give_a_customer_two_live_offers(session, clock):
    s = scene(session, clock.now, n_customers=4)
    chairs = [s.chair] + [f.resource(session, s.shop) for _ in range(2)]
    openings = []
    for chair in chairs:
        booking = f.appointment(
            session, chair, s.owner, s.service, starts_at=clock.now + timedelta(days=2), paid=True
        )
        openings.append(cancellation.cancel_appointment(session, booking.id, now=clock.now).opening)
    for opening in openings:
        offering.offer_next(session, opening.id, now=clock.now)
    live = session.scalars(select(SlotOffer).where(SlotOffer.status == "sent")).all()
    assert len(live) == 3
    assert len({o.customer_id for o in live}) == 3
    assert sorted(o.customer_id for o in live) == [c.id for c in s.customers[:3]]


def test_timeline_keeps_to_its_own_opening(session, s, clock):
    from recovery.offers.timeline import opening_timeline

    first = cancel(session, s, clock).opening
    offering.offer_next(session, first.id, now=clock.now)
    offering.decline_offer(session, openings.live_offer(session, first.id).id, now=clock.now)
    offering.offer_next(session, first.id, now=clock.now)  # the job the decline asks for
    clock.advance(minutes=5)
    other = f.appointment(
        session,
        f.resource(session, s.shop),
        s.owner,
        s.service,
        starts_at=clock.now + timedelta(days=2),
        paid=True,
    )
    second = cancellation.cancel_appointment(session, other.id, now=clock.now).opening
    offering.offer_next(session, second.id, now=clock.now)  # customer 0 again, another slot
    _, entries = opening_timeline(session, first.id)
    texts = [e.text for e in entries if e.kind == "message"]
    assert len(texts) == 2  # the two offer texts of the first opening
    assert all("tomorrow at 09:00" in t for t in texts)
