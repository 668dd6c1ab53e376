"""Payment requests for bookings, through a gateway chosen by configuration.

Payment status is a small state machine: ``pending`` -> ``succeeded`` | ``failed`` |
``canceled``, and ``failed``/``canceled`` -> ``succeeded`` only when money arrives for a
released hold (it is then refunded in full). A repeated transition is a no-op.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import select
from sqlalchemy.orm import Session

from recovery import effects
from recovery.effects import EffectKind
from recovery.models import Appointment, Customer, Payment, PaymentStatus
from recovery.payments.gateway import SANDBOX, configured_gateway_name
from recovery.payments.money import deposit_minor

log = logging.getLogger(__name__)


def request_payment(
    session: Session, appointment: Appointment, now: datetime, due_at: datetime | None = None
) -> Payment | None:
    """Ask for the service's deposit; None when the policy asks for nothing.

    It is due at ``due_at``, by default within the shop's (short) payment hold for a won
    slot. The payment's token is the unguessable key of our "Complete payment" page; the
    gateway's own object is created when the customer opens that page (``open_checkout``),
    so no provider call happens inside the YES transaction.
    """
    amount = deposit_minor(appointment.service)
    if amount == 0:
        return None
    payment = Payment(
        appointment_id=appointment.id,
        provider=configured_gateway_name(current_app),
        amount_minor=amount,
        currency=appointment.shop.currency,
        status=PaymentStatus.PENDING,
    )
    appointment.payment_due_at = due_at or now + timedelta(
        minutes=appointment.shop.payment_hold_minutes
    )
    session.add(payment)
    session.flush()
    return payment


def pending_payment_for(session: Session, appointment_id: int) -> Payment | None:
    """The booking's pending payment, row-locked (the payment page locks it too)."""
    return session.scalar(
        select(Payment)
        .where(Payment.appointment_id == appointment_id, Payment.status == PaymentStatus.PENDING)
        .with_for_update()
    )


def close_payment(session: Session, payment: Payment, now: datetime) -> None:
    """The hold is gone: make sure the customer can no longer pay at the gateway.

    Without a gateway object (sandbox, or the page was never opened) there is nothing to
    cancel. Otherwise a job cancels it after the commit; ``provider_closed_at`` stays
    empty until it has, so the sweep retries a lost job.
    """
    if payment.provider_closed_at is not None:
        return
    if payment.provider_ref is None or payment.provider == SANDBOX:
        payment.provider_closed_at = now
        return
    effects.request(session, EffectKind.CANCEL_PAYMENT, payment.id)


def is_settled(appointment: Appointment) -> bool:
    """Booked and within the payment rule: paid (online or at the desk), or nothing to pay.
    A waived deposit is not settled: cancelling it opens no slot, as no money is at stake."""
    if appointment.status not in ("booked", "completed"):
        return False
    if any(p.status == PaymentStatus.SUCCEEDED for p in appointment.payments):
        return True
    return deposit_minor(appointment.service) == 0


def mark_settled(customer: Customer, appointment: Appointment) -> None:
    """Keep the eligibility order's key: the start of the latest settled booking."""
    if customer.last_settled_at is None or appointment.starts_at > customer.last_settled_at:
        customer.last_settled_at = appointment.starts_at
