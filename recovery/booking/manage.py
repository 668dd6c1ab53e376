"""The customer's manage page (``/b/<token>``): what the booking is, and cancelling it.

The token is the booking's ``manage_token`` (128 random bits), so the link is the key:
whoever holds it may see the booking and cancel it within the shop's rules. Looking at
the page never changes anything (link previewers fetch it too); only
``cancel_by_customer`` does, through the same cancellation staff use, so the refund
follows the shop's policy and a paid future slot goes back to the recovery loop.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from recovery.booking.cancellation import cancel_appointment
from recovery.errors import InvalidTransition
from recovery.models import Appointment, AppointmentStatus, Payment, PaymentStatus
from recovery.offers.locks import lock_booking
from recovery.payments.refunds import policy_refund_minor

# ``secrets.token_urlsafe(16)`` gives 22 characters; the column holds up to 64. Anything
# else (NUL bytes, slashes, a pasted sentence) is refused before it reaches the database.
TOKEN_PATTERN = re.compile(r"[A-Za-z0-9_-]{16,64}")

CUSTOMER_REASON = "cancelled by the customer (manage link)"


class ManageState(enum.StrEnum):
    ACTIVE = "active"  # booked, in the future
    PENDING_PAYMENT = "pending_payment"  # the deposit has not been paid yet
    CANCELLED = "cancelled"
    PAST = "past"  # started, or completed


class SelfCancelRefused(InvalidTransition):
    """The customer may not cancel this booking from the link; the message says why."""


class RefundChanged(InvalidTransition):
    """The refund is no longer what the confirmation step said (the full-refund time
    passed meanwhile): the customer is asked again with the new amount."""


@dataclass(frozen=True)
class ManagePage:
    """What the manage page shows for one booking at one moment."""

    appointment: Appointment
    state: ManageState
    currency: str
    paid_minor: int  # deposits received (online or at the desk)
    refund_now_minor: int  # what cancelling now would give back, by the shop's policy
    # Until then cancelling refunds in full; None when that is past or changes nothing.
    full_refund_until: datetime | None
    refunded_minor: int  # refunds recorded so far (pending or done), after a cancellation
    can_cancel: bool
    refusal: str | None  # why not, in words for the customer; None when it can
    pending_payment: Payment | None  # the deposit still asked for, if any


def find_booking(session: Session, token: str) -> Appointment | None:
    """The booking a manage link names, or None for a malformed or unknown token."""
    if not TOKEN_PATTERN.fullmatch(token):
        return None
    return session.scalar(select(Appointment).where(Appointment.manage_token == token))


def _state(appt: Appointment, now: datetime) -> ManageState:
    if appt.status == AppointmentStatus.CANCELLED:
        return ManageState.CANCELLED
    if appt.status == AppointmentStatus.COMPLETED or appt.starts_at <= now:
        return ManageState.PAST
    if appt.status == AppointmentStatus.PENDING_PAYMENT:
        return ManageState.PENDING_PAYMENT
    return ManageState.ACTIVE


def _contact(appt: Appointment) -> str:
    phone = appt.shop.contact_phone
    return f"please call {appt.shop.name} on {phone}" if phone else f"please call {appt.shop.name}"


def refusal(appt: Appointment, now: datetime) -> str | None:
    """Why the customer may not cancel this booking from the link now; None if they may."""
    state = _state(appt, now)
    if state is ManageState.CANCELLED:
        return "This booking is already cancelled."
    if state is ManageState.PAST:
        return (
            "This booking has already started, so it can no longer be cancelled here; "
            f"{_contact(appt)}."
        )
    cutoff = appt.shop.self_cancel_cutoff_hours
    if cutoff and appt.starts_at - now < timedelta(hours=cutoff):
        hours = "1 hour" if cutoff == 1 else f"{cutoff} hours"
        return (
            f"{appt.shop.name} does not take cancellations online within {hours} of the start; "
            f"{_contact(appt)}."
        )
    return None


def manage_page(appt: Appointment, now: datetime) -> ManagePage:
    """The page's view of a booking. Reads only: nothing is changed or locked."""
    state = _state(appt, now)
    received = [p for p in appt.payments if p.status == PaymentStatus.SUCCEEDED]
    why_not = refusal(appt, now)
    refund_now = 0
    if why_not is None:
        refund_now = sum(policy_refund_minor(p, appt.shop, appt.starts_at, now) for p in received)
    pending = next((p for p in appt.payments if p.status == PaymentStatus.PENDING), None)
    full_until = appt.starts_at - timedelta(hours=appt.shop.full_refund_hours)
    partial = appt.shop.late_refund_percent < 100
    if why_not is not None or refund_now == 0 or not partial or full_until <= now:
        full_until = None
    return ManagePage(
        appointment=appt,
        state=state,
        currency=received[0].currency if received else appt.shop.currency,
        paid_minor=sum(p.amount_minor for p in received),
        refund_now_minor=refund_now,
        full_refund_until=full_until,
        # Requested or done, not refused: the payment keeps this count under its row lock.
        refunded_minor=sum(p.refunded_minor for p in received),
        can_cancel=why_not is None,
        refusal=why_not,
        pending_payment=pending if state is ManageState.PENDING_PAYMENT else None,
    )


def cancel_by_customer(
    session: Session, token: str, now: datetime, quoted_refund_minor: int | None = None
) -> ManagePage | None:
    """Cancel the booking a manage link names, if the shop's rules allow it now.

    The rules are checked again under the booking's row lock, so a staff move or
    cancellation in between is seen. Idempotent: a booking already cancelled (a repeated
    POST, a double tap) is returned as it is, with nothing changed. Raises
    ``SelfCancelRefused`` with the reason otherwise; returns None for an unknown token.
    With ``quoted_refund_minor`` (what the confirmation step promised), a different
    refund now raises ``RefundChanged`` instead of cancelling. Flushes; the caller commits.
    """
    appt = find_booking(session, token)
    if appt is None:
        return None
    appt = lock_booking(session, appt.id)  # fresh from the database, not the session cache
    if appt.status == AppointmentStatus.CANCELLED:
        return manage_page(appt, now)
    why_not = refusal(appt, now)
    if why_not is not None:
        raise SelfCancelRefused(why_not)
    if quoted_refund_minor is not None:
        refund_now = manage_page(appt, now).refund_now_minor
        if refund_now != quoted_refund_minor:
            raise RefundChanged(f"the refund is now {refund_now}, not {quoted_refund_minor}")
    cancel_appointment(session, appt.id, reason=CUSTOMER_REASON, now=now)
    return manage_page(appt, now)
