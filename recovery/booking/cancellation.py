"""Cancelling a booking: money first, then recovery.

A paid (or nothing-to-pay) booking cancelled in the future and outside the shop's lead
time becomes exactly one slot opening, and the offer loop starts after the commit.
Every other cancellation records why no slot opened (``recovery_note``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import select
from sqlalchemy.orm import Session

from recovery import effects
from recovery.availability.blocks import blocking, describe
from recovery.booking.holds import release_hold
from recovery.db import utcnow
from recovery.effects import EffectKind
from recovery.errors import InvalidTransition, NotFound
from recovery.messaging import texts
from recovery.messaging.outbox import Purpose, queue_sms
from recovery.messaging.pace import next_turn_left
from recovery.models import Appointment, AppointmentStatus, PaymentStatus, SlotOpening
from recovery.offers.locks import lock_booking
from recovery.offers.openings import open_slot
from recovery.payments.refunds import refund_cancelled_booking
from recovery.payments.requests import close_payment, is_settled, pending_payment_for


@dataclass(frozen=True)
class CancelResult:
    appointment: Appointment
    opening: SlotOpening | None
    note: str


def _why_no_recovery(
    session: Session, appt: Appointment, was_settled: bool, now: datetime
) -> str | None:
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
    # Last, as the only check that needs a query: staff blocked that time, so it cannot
    # be offered to anyone.
    block = blocking(session, appt.shop_id, appt.resource_id, appt.starts_at, appt.ends_at)
    if block is not None:
        return f"no slot opened: the time is blocked ({describe(block)})"
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
    refusal = _why_no_recovery(session, appt, was_settled, now)
    # A slot that opens is offered at once, and its offer takes the number's next turn.
    _refund_by_policy(session, appt, now, notice_waits=refusal is None)
    if refusal:
        appt.recovery_note = refusal
        session.flush()
        return CancelResult(appt, None, refusal)

    opening = open_slot(session, appt, now)
    appt.recovery_note = f"slot opening #{opening.id} created"
    session.flush()
    effects.request(session, EffectKind.OFFER_NEXT, opening.id)
    return CancelResult(appt, opening, appt.recovery_note)


def _refund_by_policy(
    session: Session, appt: Appointment, now: datetime, notice_waits: bool
) -> None:
    """Money of a cancelled booking: paid deposits refunded by policy, and a deposit
    still being asked for is closed so it can no longer be paid. The customer is told,
    whoever cancelled (staff, the manage link, the command line); when the cancellation
    opened a slot (``notice_waits``), one turn of the sender number later, so the slot's
    first offer, which leaves from the same number, goes first."""
    pending = pending_payment_for(session, appt.id)
    if pending is not None:
        pending.status = PaymentStatus.CANCELED
        close_payment(session, pending, now)
    refunded = refund_cancelled_booking(session, appt, now)
    if refunded:
        body = texts.cancelled_refunded(appt.shop, appt.starts_at, now, refunded)
        purpose = Purpose.REFUNDED
    elif appt.starts_at > now:
        body, purpose = texts.cancelled(appt.shop, appt.starts_at, now), Purpose.CANCELLED
    else:
        return
    not_before = next_turn_left(current_app, now) if notice_waits else None
    queue_sms(
        session, appt.shop, appt.customer, body, purpose, appointment=appt, not_before=not_before
    )
