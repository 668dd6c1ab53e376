"""Verified Stripe events: recorded once, each asking for a sync of its payment.

Gateway events are *triggers*, not truth. Each verified event is recorded once
(``provider_events``) and asks for a ``sync_payment`` job, which reads the intent's
current state from the gateway and applies it (``recovery.booking.holds``). So events
that repeat, arrive late or arrive in reverse order all end in the state the gateway
really holds, and the webhook answers at once while the work happens after the commit.

An event settles only our own payment: one whose row holds the intent's id, or whose
secret tag the intent's metadata carries. Events for anyone else's intents on the same
Stripe account are answered and ignored.
"""

from __future__ import annotations

import hmac
import logging
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from recovery import effects
from recovery.db import lock_row, try_insert
from recovery.effects import EffectKind
from recovery.models import Payment, ProviderEvent
from recovery.payments.gateway import INTENT_TAG_KEY, STRIPE, intent_tag

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
        # Not an intent we made: another deployment or integration on the same Stripe
        # account gets its events too. Acknowledged (Stripe would retry anything else)
        # and ignored; the event id stays in ``provider_events`` like every other.
        log.warning(
            "stripe event %s (%s): intent %s is not ours (metadata payment_id %r); ignored",
            event_id,
            event_type,
            intent.get("id"),
            (intent.get("metadata") or {}).get("payment_id"),
        )
        return "ignored: not our intent"
    effects.request(session, EffectKind.SYNC_PAYMENT, payment.id)
    return f"sync payment {payment.id}"


def _payment_for_intent(session: Session, intent: dict) -> Payment | None:
    """Our payment behind ``intent``: the one holding its id, or, when that id never
    reached our database, the one the metadata names *and proves* with its tag.

    A row id is a counter anyone can guess, and another deployment's intents may carry
    one of ours; only the per-payment secret (``gateway.intent_tag``) makes the metadata
    ours, and then only for a payment with no other intent and the same amount and
    currency.
    """
    intent_id = intent.get("id")
    if not isinstance(intent_id, str) or not intent_id:
        return None
    payment = session.scalar(
        select(Payment).where(Payment.provider == STRIPE, Payment.provider_ref == intent_id)
    )
    if payment is not None:
        return payment
    # The intent was created but our page's commit was lost.
    metadata = intent.get("metadata") or {}
    payment_id, tag = str(metadata.get("payment_id", "")), metadata.get(INTENT_TAG_KEY)
    if not payment_id.isdigit() or not isinstance(tag, str):
        return None
    payment = lock_row(session, Payment, int(payment_id))
    if (
        payment is None
        or not hmac.compare_digest(tag.encode(), intent_tag(payment).encode())
        or payment.provider != STRIPE
        or payment.provider_ref is not None
        or intent.get("amount") != payment.amount_minor
        or str(intent.get("currency", "")).upper() != payment.currency
    ):
        return None
    payment.provider_ref = intent_id
    return payment
