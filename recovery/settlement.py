"""Keeping our payments in step with the gateway: webhook events, checkout, cancellation.

Gateway events are *triggers*, not truth. Each verified event is recorded once
(``provider_events``) and asks for a ``sync_payment`` job, which reads the intent's
current state from the gateway and applies it through the loop's transitions. So events
that repeat, arrive late or arrive in reverse order all end in the state the gateway
really holds, and the webhook answers at once while the work happens after the commit.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from recovery import effects, loop
from recovery.db import lock_row, try_insert
from recovery.effects import Kind
from recovery.gateway import STRIPE, IntentState, PaymentGateway
from recovery.models import (
    Appointment,
    AppointmentStatus,
    Payment,
    PaymentStatus,
    ProviderEvent,
)

log = logging.getLogger(__name__)

# The events that can change a payment. Anything else is acknowledged and ignored.
PAYMENT_EVENTS = frozenset(
    {
        "payment_intent.succeeded",
        "payment_intent.payment_failed",
        "payment_intent.canceled",
        "payment_intent.processing",
        "payment_intent.requires_action",
    }
)


def record_stripe_event(session: Session, event: dict, now: datetime) -> str:
    """Record a verified event once; ask for a sync of the payment it is about."""
    event_id, event_type = event.get("id"), event.get("type", "")
    if not event_id:
        return "ignored: no event id"
    seen = try_insert(
        session,
        ProviderEvent(provider=STRIPE, event_id=event_id, event_type=event_type, received_at=now),
    )
    if seen is None:
        return "duplicate"
    if event_type not in PAYMENT_EVENTS:
        return f"ignored: {event_type}"
    intent = (event.get("data") or {}).get("object") or {}
    payment = _payment_for_intent(session, intent)
    if payment is None:
        log.warning("stripe event %s: no payment for intent %s", event_id, intent.get("id"))
        return "ignored: unknown payment"
    effects.request(session, Kind.SYNC_PAYMENT, payment.id)
    return f"sync payment {payment.id}"


def _payment_for_intent(session: Session, intent: dict) -> Payment | None:
    intent_id = intent.get("id")
    if not isinstance(intent_id, str) or not intent_id:
        return None
    payment = session.scalar(
        select(Payment).where(Payment.provider == STRIPE, Payment.provider_ref == intent_id)
    )
    if payment is not None:
        return payment
    # The intent was created but our page's commit was lost: its metadata names the payment.
    payment_id = str((intent.get("metadata") or {}).get("payment_id", ""))
    if not payment_id.isdigit():
        return None
    payment = lock_row(session, Payment, int(payment_id))
    if (
        payment is None
        or payment.provider != STRIPE
        or payment.provider_ref not in (None, intent_id)
        or intent.get("amount") != payment.amount_minor
        or str(intent.get("currency", "")).upper() != payment.currency
    ):
        return None
    payment.provider_ref = intent_id
    return payment


def sync_payment(session: Session, payment_id: int, gateway: PaymentGateway, now: datetime):
    """Apply the gateway's current state of a payment (the job behind every event)."""
    payment = session.get(Payment, payment_id)
    if payment is None or payment.provider_ref is None:
        return "nothing to sync"
    state = gateway.state(payment.provider_ref)
    if state is IntentState.SUCCEEDED:
        return loop.confirm_payment(session, payment.id, now)
    if state in (IntentState.FAILED, IntentState.CANCELED):
        return loop.fail_payment(session, payment.id, now)
    return f"still {state}"


def cancel_at_gateway(session: Session, payment_id: int, gateway: PaymentGateway, now: datetime):
    """Close the gateway side of a released payment, so the customer cannot pay any more.

    If the customer paid before the cancellation reached the gateway, the money is
    there: that is a late payment, refunded in full (``loop.confirm_payment``).
    """
    payment = session.get(Payment, payment_id)
    if payment is None or payment.provider_closed_at is not None:
        return "nothing to cancel"
    state = gateway.cancel(payment.provider_ref)
    if state is IntentState.SUCCEEDED:
        outcome = loop.confirm_payment(session, payment.id, now)
    else:
        outcome = "canceled"
    payment = lock_row(session, Payment, payment_id)
    payment.provider_closed_at = now
    return outcome


# ---------------------------------------------------------------- the payment page


@dataclass(frozen=True)
class Checkout:
    """What the "Complete payment" page shows for one payment."""

    payment: Payment
    appointment: Appointment
    state: str  # payable | paid | released | refunded
    client_secret: str | None = None


def open_checkout(
    session: Session, token: str, gateways: Callable[[str], PaymentGateway], now: datetime
) -> Checkout | None:
    """The page's view of a payment, starting the gateway's intent on first visit.

    The payment row is locked while the intent is created, so the page and a release of
    the hold never cross: either the release sees the intent and cancels it, or the page
    sees the release and offers nothing to pay. A hold past its deadline is released
    here rather than offered (its job may simply not have run yet).
    """
    payment = session.scalar(select(Payment).where(Payment.token == token))
    if payment is None:
        return None
    appt = payment.appointment
    due = appt.payment_due_at
    if appt.status == AppointmentStatus.PENDING_PAYMENT and due is not None and due <= now:
        loop.release_hold(session, appt.id, now=now)
    payment = lock_row(session, Payment, payment.id)
    appt = session.get(Appointment, appt.id)
    if payment.status == PaymentStatus.SUCCEEDED:
        refunded = appt.status != AppointmentStatus.BOOKED and payment.refunded_minor > 0
        return Checkout(payment, appt, "refunded" if refunded else "paid")
    if payment.status != PaymentStatus.PENDING or appt.status != AppointmentStatus.PENDING_PAYMENT:
        return Checkout(payment, appt, "released")
    gateway = gateways(payment.provider)
    if payment.provider_ref is None:
        payment.provider_ref = gateway.start(payment)
    return Checkout(payment, appt, "payable", gateway.client_secret(payment.provider_ref))
