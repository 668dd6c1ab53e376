"""Payment requests for bookings, through a gateway chosen by configuration.

Payment status is a small state machine: ``pending`` -> ``succeeded`` | ``failed`` |
``canceled``. A repeated or late transition is a logged no-op, never a crash.
"""

from __future__ import annotations

import logging
import secrets
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import select
from sqlalchemy.orm import Session

from recovery.models import Appointment, Payment, PaymentStatus
from recovery.money import deposit_minor

log = logging.getLogger(__name__)


def gateway_name() -> str:
    """``stripe`` when configured, else the ``sandbox`` that staff mark paid or failed."""
    return "stripe" if current_app.config.get("STRIPE_SECRET_KEY") else "sandbox"


def pay_url(payment: Payment) -> str:
    base = current_app.config.get("PUBLIC_BASE_URL") or "http://127.0.0.1:5000"
    return f"{base}/pay/{payment.provider_ref}"


def request_payment(session: Session, appointment: Appointment, now: datetime) -> Payment | None:
    """Ask for the service's deposit; None when the policy asks for nothing.

    The payment's reference doubles as the unguessable token of our "Complete payment"
    page; the gateway's own objects are created when the customer opens that page.
    """
    amount = deposit_minor(appointment.service)
    if amount == 0:
        return None
    payment = Payment(
        appointment_id=appointment.id,
        provider=gateway_name(),
        provider_ref="pay_" + secrets.token_urlsafe(18),
        amount_minor=amount,
        currency=appointment.shop.currency,
        status=PaymentStatus.PENDING,
    )
    appointment.payment_due_at = now + timedelta(minutes=appointment.shop.payment_hold_minutes)
    session.add(payment)
    session.flush()
    return payment


def pending_payment_for(session: Session, appointment_id: int) -> Payment | None:
    return session.scalar(
        select(Payment).where(
            Payment.appointment_id == appointment_id, Payment.status == PaymentStatus.PENDING
        )
    )


def is_settled(appointment: Appointment) -> bool:
    """Booked and within the payment rule: paid, or nothing to pay."""
    if appointment.status not in ("booked", "completed"):
        return False
    if any(p.status == PaymentStatus.SUCCEEDED for p in appointment.payments):
        return True
    return deposit_minor(appointment.service) == 0
