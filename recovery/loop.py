"""The recovery loop's state transitions (DESIGN.md, "The loop").

Every transition on an opening first locks the opening's row (``SELECT ... FOR UPDATE``),
then re-reads what it needs: transitions on one opening run one at a time, in any
process. Offer and opening updates are conditional as well (``WHERE status = ...``), and
the database constraints back both. Functions flush and never commit; side effects
(SMS, jobs at a time) are requested and leave after the caller's commit.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from recovery import effects, texts
from recovery.booking import SlotTaken, ensure_free
from recovery.db import lock_row, try_insert, utcnow
from recovery.effects import Kind
from recovery.eligibility import next_eligible_customer
from recovery.messaging import Purpose, queue_sms
from recovery.models import (
    Appointment,
    AppointmentStatus,
    Customer,
    OfferStatus,
    OpeningStatus,
    Payment,
    PaymentStatus,
    SlotOffer,
    SlotOpening,
)
from recovery.payments import (
    close_payment,
    is_settled,
    pay_url,
    pending_payment_for,
    request_payment,
)
from recovery.refunds import refund_cancelled_booking, request_refund

log = logging.getLogger(__name__)


class NotFound(LookupError):
    pass


class InvalidTransition(ValueError):
    """The record is in a state this transition cannot start from (message says why)."""


# ---------------------------------------------------------------- helpers


def lock_opening(session: Session, opening_id: int) -> SlotOpening | None:
    return lock_row(session, SlotOpening, opening_id)


def _reload(session: Session, model, ident: int):
    """Re-read a row after taking the opening's lock (another transaction may have moved it)."""
    return session.scalar(
        select(model).where(model.id == ident).execution_options(populate_existing=True)
    )


def lock_booking(session: Session, appointment_id: int) -> Appointment | None:
    """Lock a booking's rows in the one order every transition uses: its source opening
    (if it came from one), then the appointment; payments are locked after these."""
    appt = session.get(Appointment, appointment_id)
    if appt is None:
        return None
    if appt.source_slot_opening_id:
        lock_opening(session, appt.source_slot_opening_id)
    return lock_row(session, Appointment, appointment_id)


def live_offer(session: Session, opening_id: int) -> SlotOffer | None:
    return session.scalar(
        select(SlotOffer).where(
            SlotOffer.slot_opening_id == opening_id, SlotOffer.status == OfferStatus.SENT
        )
    )


def held_booking(session: Session, opening_id: int) -> Appointment | None:
    """The active booking made from this opening, if a YES already won it."""
    return session.scalar(
        select(Appointment).where(
            Appointment.source_slot_opening_id == opening_id,
            Appointment.status.in_((AppointmentStatus.PENDING_PAYMENT, AppointmentStatus.BOOKED)),
        )
    )


def _expire_opening(opening: SlotOpening, note: str, now: datetime) -> None:
    opening.status = OpeningStatus.EXPIRED
    opening.expired_at = now
    opening.outcome_note = note
    log.info("opening %s expired: %s", opening.id, note)


# ---------------------------------------------------------------- cancellation


@dataclass(frozen=True)
class CancelResult:
    appointment: Appointment
    opening: SlotOpening | None
    note: str


def _why_no_recovery(appt: Appointment, was_settled: bool, now: datetime) -> str | None:
    if not was_settled:
        return "no slot opened: the booking was not paid"
    if appt.starts_at <= now:
        return "no slot opened: the booking time has passed"
    lead = timedelta(minutes=appt.shop.min_lead_minutes)
    if appt.starts_at - now < lead:
        return (
            f"no slot opened: it starts within the shop's {appt.shop.min_lead_minutes}-minute "
            "lead time"
        )
    return None


def cancel_appointment(
    session: Session, appointment_id: int, reason: str = "cancelled", now: datetime | None = None
) -> CancelResult:
    """Cancel a booking; a paid future one becomes exactly one slot opening.

    Idempotent: cancelling again (a retry, a double click) returns the first outcome.
    The offer loop starts after the commit.
    """
    now = now or utcnow()
    appt = lock_booking(session, appointment_id)
    if appt is None:
        raise NotFound(f"no appointment {appointment_id}")
    if appt.status == AppointmentStatus.CANCELLED:
        opening = session.scalar(
            select(SlotOpening).where(SlotOpening.source_appointment_id == appt.id)
        )
        return CancelResult(appt, opening, appt.recovery_note or "already cancelled")
    if appt.status == AppointmentStatus.COMPLETED:
        raise InvalidTransition("a completed appointment cannot be cancelled")
    if appt.status == AppointmentStatus.PENDING_PAYMENT and appt.source_slot_opening_id:
        # A recovered booking still waiting for payment: give the slot back to the loop.
        release_hold(session, appt.id, reason=reason, now=now, force=True)
        return CancelResult(
            appt, session.get(SlotOpening, appt.source_slot_opening_id), appt.recovery_note or ""
        )

    was_settled = is_settled(appt)
    appt.status = AppointmentStatus.CANCELLED
    appt.cancelled_at = now
    appt.cancellation_reason = reason[:200]
    _refund_by_policy(session, appt, now)
    refusal = _why_no_recovery(appt, was_settled, now)
    if refusal:
        appt.recovery_note = refusal
        session.flush()
        return CancelResult(appt, None, refusal)

    opening = _open_slot(session, appt, now)
    appt.recovery_note = f"slot opening #{opening.id} created"
    session.flush()
    effects.request(session, Kind.OFFER_NEXT, opening.id)
    return CancelResult(appt, opening, appt.recovery_note)


def _refund_by_policy(session: Session, appt: Appointment, now: datetime) -> None:
    """Money of a cancelled booking: paid deposits refunded by policy, and a deposit
    still being asked for is closed so it can no longer be paid."""
    pending = pending_payment_for(session, appt.id)
    if pending is not None:
        pending.status = PaymentStatus.CANCELED
        close_payment(session, pending, now)
    refunded = refund_cancelled_booking(session, appt, now)
    if refunded:
        body = texts.cancelled_refunded(appt.shop, appt.starts_at, now, refunded)
        queue_sms(session, appt.shop, appt.customer, body, Purpose.REFUNDED)


def _open_slot(session: Session, appt: Appointment, now: datetime) -> SlotOpening:
    if appt.source_slot_opening_id:
        # A recovered booking cancelled later: its opening (filled) goes back on offer.
        opening = lock_opening(session, appt.source_slot_opening_id)
        if opening is not None and opening.status == OpeningStatus.FILLED:
            opening.status = OpeningStatus.OPEN
            opening.filled_at = None
            opening.outcome_note = f"reopened: recovered booking #{appt.id} was cancelled"
            return opening
    opening = try_insert(
        session,
        SlotOpening(
            shop_id=appt.shop_id,
            resource_id=appt.resource_id,
            service_id=appt.service_id,
            source_appointment_id=appt.id,
            starts_at=appt.starts_at,
            ends_at=appt.ends_at,
            status=OpeningStatus.OPEN,
            created_at=now,
        ),
    )
    if opening is None:
        # Another live opening already covers this resource and start: reuse it.
        existing = session.scalar(
            select(SlotOpening).where(
                SlotOpening.resource_id == appt.resource_id,
                SlotOpening.starts_at == appt.starts_at,
                SlotOpening.status.in_((OpeningStatus.OPEN, OpeningStatus.FILLED)),
            )
        )
        if existing is None:
            raise InvalidTransition(f"could not open a slot for booking #{appt.id}")
        return existing
    return opening


# ---------------------------------------------------------------- offering


class OfferOutcome(enum.StrEnum):
    OFFERED = "offered"
    NOT_OPEN = "opening is not open"
    ALREADY_LIVE = "an offer is already live"
    HELD = "held for a booking"
    EXPIRED = "opening expired"


def offer_next(session: Session, opening_id: int, now: datetime | None = None) -> OfferOutcome:
    """Offer the opening to the next eligible customer, or expire it if there is none."""
    now = now or utcnow()
    opening = lock_opening(session, opening_id)
    if opening is None or opening.status != OpeningStatus.OPEN:
        return OfferOutcome.NOT_OPEN
    if live_offer(session, opening.id) is not None:
        return OfferOutcome.ALREADY_LIVE
    if held_booking(session, opening.id) is not None:
        return OfferOutcome.HELD
    lead = timedelta(minutes=opening.shop.min_lead_minutes)
    if opening.starts_at - now < lead:
        _expire_opening(opening, "too close to the start to offer", now)
        return OfferOutcome.EXPIRED

    for _ in range(5):
        customer = next_eligible_customer(session, opening, now)
        if customer is None:
            _expire_opening(opening, "no eligible customers left", now)
            return OfferOutcome.EXPIRED
        offer = _create_offer(session, opening, customer, now)
        if offer is not None:
            body = texts.offer(opening.shop, opening.service, opening.starts_at, now)
            queue_sms(session, opening.shop, customer, body, Purpose.OFFER, offer=offer)
            effects.request(session, Kind.EXPIRE_OFFER, offer.id, at=offer.expires_at)
            log.info("opening %s offered to customer %s", opening.id, customer.id)
            return OfferOutcome.OFFERED
    # Five customers in a row were taken by concurrent openings: try again shortly.
    effects.request(session, Kind.OFFER_NEXT, opening.id, at=now + timedelta(seconds=2))
    return OfferOutcome.ALREADY_LIVE


def _create_offer(session: Session, opening: SlotOpening, customer: Customer, now: datetime):
    """Insert the live offer; None if a concurrent opening just gave this customer one."""
    return try_insert(
        session,
        SlotOffer(
            slot_opening_id=opening.id,
            customer_id=customer.id,
            status=OfferStatus.SENT,
            sent_at=now,
            expires_at=now + timedelta(minutes=opening.shop.offer_ttl_minutes),
        ),
    )


def expire_offer(session: Session, offer_id: int, now: datetime | None = None) -> str:
    """The offer's time is up: mark it expired and offer the next customer at once."""
    now = now or utcnow()
    offer = session.get(SlotOffer, offer_id)
    if offer is None:
        return "no such offer"
    opening = lock_opening(session, offer.slot_opening_id)
    offer = _reload(session, SlotOffer, offer_id)
    if offer.status != OfferStatus.SENT:
        return f"offer already {offer.status}"
    if offer.expires_at > now:
        # Ran early (clock skew between machines): come back at the right time.
        effects.request(session, Kind.EXPIRE_OFFER, offer.id, at=offer.expires_at)
        return "not due yet"
    offer.status = OfferStatus.EXPIRED
    session.flush()
    return f"expired; next: {offer_next(session, opening.id, now)}"


def expire_offer_now(session: Session, offer_id: int, now: datetime | None = None) -> str:
    """Staff cut a live offer short: its deadline becomes now, then it expires like any
    other (``expire_offer`` refuses early runs, which protects offers from early jobs).
    The scheduled expiry job later finds it expired and does nothing."""
    now = now or utcnow()
    offer = session.get(SlotOffer, offer_id)
    if offer is None:
        return "no such offer"
    lock_opening(session, offer.slot_opening_id)
    offer = _reload(session, SlotOffer, offer_id)
    if offer.status != OfferStatus.SENT:
        return f"offer already {offer.status}"
    offer.expires_at = min(offer.expires_at, now)
    session.flush()
    return expire_offer(session, offer.id, now)


def retrigger(session: Session, opening_id: int, now: datetime | None = None) -> str:
    """Staff: offer the opening to the next customer now, cutting short any live offer."""
    offer = live_offer(session, opening_id)
    if offer is not None:
        return expire_offer_now(session, offer.id, now)
    return str(offer_next(session, opening_id, now))


def decline_offer(session: Session, offer_id: int, now: datetime | None = None) -> bool:
    """The customer said NO (or STOP): decline and offer the next customer at once."""
    now = now or utcnow()
    offer = session.get(SlotOffer, offer_id)
    if offer is None:
        return False
    opening = lock_opening(session, offer.slot_opening_id)
    offer = _reload(session, SlotOffer, offer_id)
    if offer.status != OfferStatus.SENT:
        return False
    offer.status = OfferStatus.DECLINED
    offer.responded_at = now
    session.flush()
    offer_next(session, opening.id, now)
    return True


def expire_opening(session: Session, opening_id: int, note: str, now: datetime | None = None):
    """Staff ended recovery for this opening: expire it and its live offer."""
    now = now or utcnow()
    opening = lock_opening(session, opening_id)
    if opening is None or opening.status != OpeningStatus.OPEN:
        return False
    offer = live_offer(session, opening.id)
    if offer is not None:
        offer.status = OfferStatus.EXPIRED
    _expire_opening(opening, note, now)
    session.flush()
    return True


# ---------------------------------------------------------------- accepting


class AcceptOutcome(enum.StrEnum):
    WON = "won"
    ALREADY_YOURS = "already yours"
    EXPIRED = "expired"
    TAKEN = "taken"
    NO_OFFER = "no offer"


@dataclass(frozen=True)
class Acceptance:
    outcome: AcceptOutcome
    appointment: Appointment | None = None
    payment: Payment | None = None
    confirmation: str = ""  # what the winner is told to do next (the webhook's answer)


def accept_offer(session: Session, offer_id: int, now: datetime | None = None) -> Acceptance:
    """A YES: the first one on a live offer wins a booking; everyone else learns why not."""
    now = now or utcnow()
    offer = session.get(SlotOffer, offer_id)
    if offer is None:
        return Acceptance(AcceptOutcome.NO_OFFER)
    opening = lock_opening(session, offer.slot_opening_id)
    offer = _reload(session, SlotOffer, offer_id)
    if offer.status == OfferStatus.ACCEPTED:
        return Acceptance(AcceptOutcome.ALREADY_YOURS, held_booking(session, opening.id))
    if offer.status == OfferStatus.EXPIRED or (
        offer.status == OfferStatus.SENT and offer.expires_at <= now
    ):
        if offer.status == OfferStatus.SENT:  # due, and the expiry job has not run yet
            expire_offer(session, offer.id, now)
        return Acceptance(AcceptOutcome.EXPIRED)
    if offer.status != OfferStatus.SENT or opening.status != OpeningStatus.OPEN:
        if opening.status == OpeningStatus.OPEN:  # they said NO, or their hold was released
            return Acceptance(AcceptOutcome.NO_OFFER)
        return Acceptance(AcceptOutcome.TAKEN)

    # The guard that holds without Redis and without the row lock: only one transaction
    # can move this offer from sent and this opening from open.
    won_offer = session.execute(
        update(SlotOffer)
        .where(
            SlotOffer.id == offer.id,
            SlotOffer.status == OfferStatus.SENT,
            SlotOffer.expires_at > now,
        )
        .values(status=OfferStatus.ACCEPTED, responded_at=now)
    ).rowcount
    won_opening = (
        won_offer
        and session.execute(
            update(SlotOpening)
            .where(SlotOpening.id == opening.id, SlotOpening.status == OpeningStatus.OPEN)
            .values(status=OpeningStatus.FILLED, filled_at=now, outcome_note=None)
        ).rowcount
    )
    if not (won_offer and won_opening):
        raise InvalidTransition("offer or opening moved under a held lock")  # never expected

    appointment = _book(session, opening, offer, now)
    if appointment is None:
        offer.status = OfferStatus.EXPIRED
        _expire_opening(opening, "the time was booked another way", now)
        session.flush()
        return Acceptance(AcceptOutcome.TAKEN)

    shop = opening.shop
    customer = offer.customer
    payment = request_payment(session, appointment, now)
    if payment is None:  # the policy asks for nothing: booked at once
        appointment.status = AppointmentStatus.BOOKED
        mark_settled(customer, appointment)
        body = texts.accepted_booked(shop, appointment.starts_at, now)
    else:
        effects.request(session, Kind.RELEASE_HOLD, appointment.id, at=appointment.payment_due_at)
        body = texts.accepted_pay(
            shop, payment.amount_minor, shop.payment_hold_minutes, pay_url(payment)
        )
    session.flush()
    log.info(
        "opening %s won by customer %s (appointment %s)", opening.id, customer.id, appointment.id
    )
    return Acceptance(AcceptOutcome.WON, appointment, payment, confirmation=body)


def _book(session: Session, opening: SlotOpening, offer: SlotOffer, now: datetime):
    """The winner's booking; None if the time is taken (checked in code for SQLite, and
    by the exclusion constraint on PostgreSQL, which also settles races)."""
    try:
        ensure_free(session, opening.resource_id, opening.starts_at, opening.ends_at)
    except SlotTaken:
        return None
    return try_insert(
        session,
        Appointment(
            shop_id=opening.shop_id,
            resource_id=opening.resource_id,
            customer_id=offer.customer_id,
            service_id=opening.service_id,
            starts_at=opening.starts_at,
            ends_at=opening.ends_at,
            status=AppointmentStatus.PENDING_PAYMENT,
            source_slot_opening_id=opening.id,
            created_at=now,
        ),
    )


def mark_settled(customer: Customer, appointment: Appointment) -> None:
    """Keep the eligibility order's key: the start of the latest settled booking."""
    if customer.last_settled_at is None or appointment.starts_at > customer.last_settled_at:
        customer.last_settled_at = appointment.starts_at


# ---------------------------------------------------------------- payment outcomes


HOLD_EXPIRED = "payment not received in time"
PAYMENT_FAILED = "payment failed"
LATE_PAYMENT = "paid after the hold was released"


def _release_kind(reason: str) -> str:
    """Which text the customer gets: their payment timed out, failed, or staff cancelled."""
    return {HOLD_EXPIRED: "expired", PAYMENT_FAILED: "failed"}.get(reason, "cancelled")


def release_hold(
    session: Session,
    appointment_id: int,
    reason: str = HOLD_EXPIRED,
    now: datetime | None = None,
    force: bool = False,
) -> bool:
    """Give a won slot back: the booking is cancelled, the offer declined, the opening
    open again and the next customer offered. Used for a failed or abandoned payment
    (``force`` skips the deadline check, for failures and staff cancellations)."""
    now = now or utcnow()
    appt = session.get(Appointment, appointment_id)
    if appt is None or appt.source_slot_opening_id is None:
        return False
    appt = lock_booking(session, appointment_id)
    opening = session.get(SlotOpening, appt.source_slot_opening_id)
    if appt.status != AppointmentStatus.PENDING_PAYMENT:
        return False
    if not force and appt.payment_due_at and appt.payment_due_at > now:
        effects.request(session, Kind.RELEASE_HOLD, appt.id, at=appt.payment_due_at)
        return False

    appt.status = AppointmentStatus.CANCELLED
    appt.cancelled_at = now
    appt.cancellation_reason = reason[:200]
    appt.recovery_note = f"hold released; slot opening #{opening.id} reopened"
    payment = pending_payment_for(session, appt.id)
    if payment is not None:
        payment.status = PaymentStatus.CANCELED
        close_payment(session, payment, now)
    offer = session.scalar(
        select(SlotOffer).where(
            SlotOffer.slot_opening_id == opening.id,
            SlotOffer.customer_id == appt.customer_id,
            SlotOffer.status == OfferStatus.ACCEPTED,
        )
    )
    if offer is not None:
        offer.status = OfferStatus.DECLINED
    if opening.status == OpeningStatus.FILLED:
        opening.status = OpeningStatus.OPEN
        opening.filled_at = None
        opening.outcome_note = f"reopened: {reason}"
    body = texts.hold_released(appt.shop, appt.starts_at, now, why=_release_kind(reason))
    queue_sms(session, appt.shop, appt.customer, body, Purpose.RELEASED)
    session.flush()
    offer_next(session, opening.id, now)
    return True


def confirm_payment(session: Session, payment_id: int, now: datetime | None = None) -> str:
    """The deposit arrived: the booking is confirmed if its hold still stands.

    Money that arrives for a hold already released (abandoned, failed, cancelled) is
    refunded in full at once and the customer told: the slot may be someone else's now.
    """
    now = now or utcnow()
    payment = session.get(Payment, payment_id)
    if payment is None:
        raise NotFound(f"no payment {payment_id}")
    appt = lock_booking(session, payment.appointment_id)
    payment = lock_row(session, Payment, payment_id)
    if payment.status == PaymentStatus.SUCCEEDED:
        return "already succeeded"
    payment.status = PaymentStatus.SUCCEEDED
    payment.succeeded_at = now
    if appt.status != AppointmentStatus.PENDING_PAYMENT:
        log.warning(
            "payment %s arrived for appointment %s in state %s: refunding",
            payment.id,
            appt.id,
            appt.status,
        )
        session.flush()
        request_refund(
            session,
            payment.id,
            payment.amount_minor,
            LATE_PAYMENT,
            f"late-{payment.id}",
            now=now,
        )
        body = texts.late_payment_refunded(appt.shop, payment.amount_minor)
        queue_sms(session, appt.shop, appt.customer, body, Purpose.REFUNDED)
        session.flush()
        return "late: refunded"
    appt.status = AppointmentStatus.BOOKED
    appt.payment_due_at = None
    mark_settled(appt.customer, appt)
    body = texts.paid_booked(appt.shop, appt.starts_at, now)
    queue_sms(session, appt.shop, appt.customer, body, Purpose.BOOKED)
    session.flush()
    return "booked"


def fail_payment(session: Session, payment_id: int, now: datetime | None = None) -> str:
    """The deposit failed: release the hold at once so the next customer is offered."""
    now = now or utcnow()
    payment = session.get(Payment, payment_id)
    if payment is None:
        raise NotFound(f"no payment {payment_id}")
    if payment.status != PaymentStatus.PENDING:
        return f"ignored: payment already {payment.status}"
    released = release_hold(
        session, payment.appointment_id, reason=PAYMENT_FAILED, now=now, force=True
    )
    payment = lock_row(session, Payment, payment_id)
    if payment.status not in (PaymentStatus.PENDING, PaymentStatus.CANCELED):
        return f"ignored: payment already {payment.status}"
    payment.status = PaymentStatus.FAILED
    close_payment(session, payment, now)
    session.flush()
    return "released" if released else "failed"
