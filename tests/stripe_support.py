"""Helpers for payment tests: the customer's side of Stripe, and signed webhook deliveries.

The customer's browser would use Stripe.js against the intent's client secret; here the
real ``stripe`` SDK plays that part against localstripe, so the intents our app created
really succeed, fail or refuse to be paid.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time

import stripe

GOOD_CARD = "4242424242424242"
DECLINED_CARD = "4000000000000341"  # attaches, then the charge is declined


class Customer:
    """The paying customer, talking to (local) Stripe with the SDK."""

    def __init__(self, api_base: str) -> None:
        self.client = stripe.StripeClient(
            "sk_test_local", base_addresses={"api": api_base}, max_network_retries=0
        )

    def intent(self, intent_id: str):
        return self.client.v1.payment_intents.retrieve(intent_id)

    def pay(self, intent_id: str, card: str = GOOD_CARD):
        """Attach a card and confirm; a declined card raises ``stripe.CardError``."""
        method = self.client.v1.payment_methods.create(
            params={
                "type": "card",
                "card": {"number": card, "exp_month": 12, "exp_year": 2034, "cvc": "123"},
            }
        )
        self.client.v1.payment_intents.update(intent_id, params={"payment_method": method.id})
        return self.client.v1.payment_intents.confirm(intent_id)

    def refunds(self, intent_id: str) -> list[int]:
        listed = self.client.v1.refunds.list(params={"payment_intent": intent_id})
        return sorted(r.amount for r in listed.data)

    def paid_intent(self, amount_minor: int, currency: str = "gbp") -> str:
        """An intent that already succeeded (an ordinary booking's deposit)."""
        intent = self.client.v1.payment_intents.create(
            params={"amount": amount_minor, "currency": currency, "payment_method_types": ["card"]}
        )
        self.pay(intent.id)
        return intent.id


def event_for(intent, event_type: str, event_id: str | None = None) -> dict:
    """A Stripe event about ``intent``, as Stripe would post it."""
    return {
        "id": event_id or "evt_" + secrets.token_hex(12),
        "object": "event",
        "type": event_type,
        "created": int(time.time()),
        "livemode": False,
        "data": {"object": intent.to_dict() if hasattr(intent, "to_dict") else intent},
    }


def sign(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    """The ``Stripe-Signature`` header: HMAC-SHA256 of ``"{t}.{payload}"``."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def deliver(client, event: dict, secret: str, **sign_kw):
    """POST one event to our webhook, signed like Stripe does."""
    payload = json.dumps(event).encode()
    return client.post(
        "/webhooks/stripe",
        data=payload,
        headers={"Stripe-Signature": sign(payload, secret, **sign_kw)},
        content_type="application/json",
    )
