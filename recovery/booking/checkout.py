"""The payment page's view of one payment ("Complete payment", ``/pay/<token>``).

The gateway's intent is started when the customer first opens the page, so no provider
call happens inside the YES transaction; the page then shows what is left to do.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from recovery import effects
from recovery.booking.holds import LATE_PAYMENT, Gateways, release_unless_paid
from recovery.db import lock_row
from recovery.effects import EffectKind
from recovery.models import Appointment, AppointmentStatus, Payment, PaymentStatus
from recovery.payments.gateway import SANDBOX, IntentState
from recovery.payments.requests import close_payment

TOKEN_PATTERN = re.compile(r"[A-Za-z0-9_-]{16,64}")


class PageState(enum.StrEnum):
    PAYABLE = "payable"
    CONFIRMING = "confirming"  # the gateway has the money; our sync job is on its way
    PAID = "paid"
    RELEASED = "released"  # the hold ended unpaid
    REFUNDED_LATE = "refunded_late"  # paid after release: refunded in full
    CANCELLED = "cancelled"  # paid, then the booking was cancelled (refund by policy)


@dataclass(frozen=True)
class Checkout:
    """What the "Complete payment" page shows for one payment."""

    payment: Payment
    appointment: Appointment
    state: PageState
    client_secret: str | None = None


def _settled_state(payment: Payment, appt: Appointment) -> PageState | None:
    """The page's state when there is nothing left to pay; None while payable."""
    if payment.status == PaymentStatus.SUCCEEDED:
        if appt.status in (AppointmentStatus.BOOKED, AppointmentStatus.COMPLETED):
            return PageState.PAID
        late = any(r.reason == LATE_PAYMENT for r in payment.refunds)
        return PageState.REFUNDED_LATE if late else PageState.CANCELLED
    if payment.status != PaymentStatus.PENDING or appt.status != AppointmentStatus.PENDING_PAYMENT:
        return PageState.RELEASED
    return None


def open_checkout(
    session: Session, token: str, gateways: Gateways, now: datetime
) -> Checkout | None:
    """The page's view of a payment, starting the gateway's intent on first visit.

    Gateway calls happen with no row locked. The intent's id is then stored under the
    payment's row lock: if the hold was released meanwhile, the fresh intent is cancelled
    like any other released one, so a lost slot can never be paid for.
    """
    if not TOKEN_PATTERN.fullmatch(token):
        return None
    payment = session.scalar(select(Payment).where(Payment.token == token))
    if payment is None:
        return None
    appt = payment.appointment
    due = appt.payment_due_at
    if appt.status == AppointmentStatus.PENDING_PAYMENT and due is not None and due <= now:
        release_unless_paid(session, appt.id, gateways, now)
    settled = _settled_state(payment, appt)
    if settled is not None:
        return Checkout(payment, appt, settled)
    if payment.provider == SANDBOX:
        return Checkout(payment, appt, PageState.PAYABLE)

    gateway = gateways(payment.provider)
    if payment.provider_ref is None:
        intent = gateway.start(payment)
        payment = lock_row(session, Payment, payment.id)
        payment.provider_ref = payment.provider_ref or intent.ref
        if payment.status != PaymentStatus.PENDING:
            payment.provider_closed_at = None
            close_payment(session, payment, now)
            return Checkout(payment, appt, PageState.RELEASED)
    else:
        intent = gateway.lookup(payment.provider_ref)
    if intent.state is IntentState.SUCCEEDED:  # back from paying, before the webhook's job
        effects.request(session, EffectKind.SYNC_PAYMENT, payment.id)
        return Checkout(payment, appt, PageState.CONFIRMING)
    return Checkout(payment, appt, PageState.PAYABLE, intent.client_secret)
