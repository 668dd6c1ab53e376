"""Keeping our payments in step with the gateway: webhook events, checkout, cancellation.

Gateway events are *triggers*, not truth. Each verified event is recorded once
(``provider_events``) and asks for a ``sync_payment`` job, which reads the intent's
current state from the gateway and applies it through the loop's transitions. So events
that repeat, arrive late or arrive in reverse order all end in the state the gateway
really holds, and the webhook answers at once while the work happens after the commit.
"""

from __future__ import annotations

import enum
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from recovery import effects, loop
from recovery.db import lock_row, try_insert
from recovery.effects import Kind
from recovery.gateway import SANDBOX, STRIPE, GatewayError, IntentState, PaymentGateway
from recovery.models import (
    Appointment,
    AppointmentStatus,
    Payment,
    PaymentStatus,
    ProviderEvent,
)
from recovery.payments import close_payment

log = logging.getLogger(__name__)

Gateways = Callable[[str], PaymentGateway]  # provider name -> its gateway

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
    state = gateway.lookup(payment.provider_ref).state  # no row locks held during the call
    if state is IntentState.SUCCEEDED:
        return loop.confirm_payment(session, payment.id, now)
    if state in (IntentState.FAILED, IntentState.CANCELED):
        return loop.fail_payment(session, payment.id, now)
    return f"still {state}"


def release_unless_paid(
    session: Session, appointment_id: int, gateways: Gateways, now: datetime
) -> str:
    """The hold's deadline: ask the gateway before giving the slot away.

    If the customer paid in time but the event (or its job) has not reached us, the
    payment is confirmed instead of released and refunded as late.
    """
    payment = session.scalar(
        select(Payment).where(
            Payment.appointment_id == appointment_id, Payment.status == PaymentStatus.PENDING
        )
    )
    if payment is not None and payment.provider_ref and payment.provider != SANDBOX:
        intent = gateways(payment.provider).lookup(payment.provider_ref)
        if intent.state is IntentState.SUCCEEDED:
            return loop.confirm_payment(session, payment.id, now)
    return "released" if loop.release_hold(session, appointment_id, now=now) else "not released"


def cancel_at_gateway(session: Session, payment_id: int, gateway: PaymentGateway, now: datetime):
    """Close the gateway side of a released payment, so the customer cannot pay any more.

    If the customer paid before the cancellation reached the gateway, the money is
    there: that is a late payment, refunded in full (``loop.confirm_payment``). An intent
    that can be neither cancelled nor has succeeded (still processing) is tried again.
    """
    payment = session.get(Payment, payment_id)
    if payment is None or payment.provider_closed_at is not None:
        return "nothing to cancel"
    state = gateway.cancel(payment.provider_ref)
    if state is IntentState.SUCCEEDED:
        outcome = loop.confirm_payment(session, payment.id, now)
    elif state is IntentState.CANCELED:
        outcome = "canceled"
    else:
        raise GatewayError(f"intent {payment.provider_ref} is {state}: cannot close it yet")
    payment = lock_row(session, Payment, payment_id)
    payment.provider_closed_at = now
    return outcome


# ---------------------------------------------------------------- the payment page

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
        late = any(r.reason == loop.LATE_PAYMENT for r in payment.refunds)
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
        effects.request(session, Kind.SYNC_PAYMENT, payment.id)
        return Checkout(payment, appt, PageState.CONFIRMING)
    return Checkout(payment, appt, PageState.PAYABLE, intent.client_secret)
