"""Payment gateways behind one small interface: Stripe, and a sandbox for the demo and tests.

Stripe is used through **PaymentIntents**, not Checkout Sessions, because:

* our own "Complete payment" page names the shop, time, service and amount, then mounts
  Stripe's card element against the intent's client secret: the customer pays on a page
  that shows what they are paying for, and card data still goes only to Stripe;
* a payment hold lasts minutes (often 15), and an intent can be cancelled at any moment
  when the hold is released, while a Checkout Session cannot be made to expire sooner than
  30 minutes after it is created;
* one object id (``pi_...``) ties every webhook event, cancellation and refund to our
  payment row.

Which gateway a payment uses is fixed when it is created (``Payment.provider``), so a
change of configuration never strands payments already in flight.
"""

from __future__ import annotations

import enum
import hashlib
import logging
from dataclasses import dataclass
from typing import Protocol

import stripe
from flask import Flask

from recovery.models import Payment

log = logging.getLogger(__name__)

HTTP_TIMEOUT_SECONDS = 10
SANDBOX = "sandbox"
STRIPE = "stripe"
DESK = "desk"  # money taken in the shop and recorded by staff
_EXTENSION = "recovery.gateways"


# The metadata key of an intent's proof that we made it for one payment (``intent_tag``).
INTENT_TAG_KEY = "payment_tag"


def intent_tag(payment: Payment) -> str:
    """The per-payment secret an intent's metadata carries, so an event can be tied to
    its payment even when the intent's id never reached our database.

    Derived from the payment's random token rather than the token itself: metadata is
    shown in Stripe's dashboard and sent to every webhook endpoint of the account, and
    the token opens the payment page. The row id beside it in the metadata only says
    which payment to check; alone it proves nothing (it is a counter).
    """
    return hashlib.sha256(f"slot-recovery-intent:{payment.token}".encode()).hexdigest()


class GatewayError(RuntimeError):
    """The gateway could not answer now (network, rate limit, outage): retry later."""


class GatewayRefused(GatewayError):
    """The gateway answered no (e.g. a refund it will not make): retrying cannot help."""


class IntentState(enum.StrEnum):
    PENDING = "pending"  # waiting for the customer, or still processing
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # the last attempt was declined
    CANCELED = "canceled"


@dataclass(frozen=True)
class Intent:
    """The gateway's view of one payment."""

    ref: str
    state: IntentState
    client_secret: str | None = None  # handed to the customer's browser only


class PaymentGateway(Protocol):
    """Every call may go over the network: callers hold no database row locks."""

    name: str

    def start(self, payment: Payment) -> Intent:
        """Create the gateway's object for ``payment`` (idempotent per payment)."""
        ...

    def lookup(self, provider_ref: str) -> Intent: ...

    def cancel(self, provider_ref: str) -> IntentState:
        """Stop the customer paying; returns the state after (``SUCCEEDED`` if too late)."""
        ...

    def refund(self, provider_ref: str, amount_minor: int, idempotency_key: str) -> str:
        """Refund part or all of a succeeded payment; returns the refund's id.
        Raises ``GatewayRefused`` if the gateway will not make it."""
        ...


class SandboxGateway:
    """No money moves. Staff mark payments paid or failed in the admin panel."""

    name = SANDBOX

    def start(self, payment: Payment) -> Intent:
        return Intent(f"sandbox_{payment.token}", IntentState.PENDING)

    def lookup(self, provider_ref: str) -> Intent:
        return Intent(provider_ref, IntentState.PENDING)  # only staff decide the outcome

    def cancel(self, provider_ref: str) -> IntentState:
        return IntentState.CANCELED

    def refund(self, provider_ref: str, amount_minor: int, idempotency_key: str) -> str:
        return f"sandbox_re_{idempotency_key}"


class DeskGateway:
    """Money paid at the desk is handed back at the desk: a refund is recorded for staff
    to pay out; there is nothing online to start, look up or cancel."""

    name = DESK

    def start(self, payment: Payment) -> Intent:
        raise GatewayError("a desk payment has no online payment page")

    def lookup(self, provider_ref: str) -> Intent:
        return Intent(provider_ref, IntentState.SUCCEEDED)

    def cancel(self, provider_ref: str) -> IntentState:
        return IntentState.SUCCEEDED

    def refund(self, provider_ref: str, amount_minor: int, idempotency_key: str) -> str:
        return f"desk_re_{idempotency_key}"


def _stripe_errors(func):
    """Map the SDK's errors onto ours: 4xx answers are refusals, the rest are retried."""

    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except (stripe.InvalidRequestError, stripe.CardError, stripe.PermissionError) as exc:
            raise GatewayRefused(f"stripe refused: {exc.user_message or exc}") from exc
        except stripe.StripeError as exc:
            raise GatewayError(f"stripe unavailable: {exc}") from exc

    wrapper.__name__ = func.__name__
    wrapper.__doc__ = func.__doc__
    return wrapper


@dataclass
class StripeGateway:
    secret_key: str
    api_base: str | None = None  # a local fake in tests; Stripe's own API otherwise

    name = STRIPE

    def __post_init__(self) -> None:
        self.client = stripe.StripeClient(
            self.secret_key,
            base_addresses={"api": self.api_base} if self.api_base else None,
            max_network_retries=2,  # the SDK retries connection errors with the same key
            # Well inside the 30 s job and request timeouts (the SDK's default is 80 s).
            http_client=stripe.new_default_http_client(timeout=HTTP_TIMEOUT_SECONDS),
        )

    @_stripe_errors
    def start(self, payment: Payment) -> Intent:
        intent = self.client.v1.payment_intents.create(
            params={
                "amount": payment.amount_minor,
                "currency": payment.currency.lower(),
                "payment_method_types": ["card"],
                "metadata": {
                    "payment_id": str(payment.id),
                    "appointment_id": str(payment.appointment_id),
                    INTENT_TAG_KEY: intent_tag(payment),
                },
            },
            # A retry, or two page loads at once, gets the same intent back. The token is
            # random, so keys never collide between deployments sharing one account.
            options={"idempotency_key": f"slot-recovery-intent-{payment.token}"},
        )
        return _view(intent)

    @_stripe_errors
    def lookup(self, provider_ref: str) -> Intent:
        return _view(self.client.v1.payment_intents.retrieve(provider_ref))

    def cancel(self, provider_ref: str) -> IntentState:
        try:
            return _view(self._cancel(provider_ref)).state
        except GatewayRefused:
            # Stripe refuses to cancel an intent that succeeded, was cancelled already, or
            # is processing: what matters is the state it is in.
            return self.lookup(provider_ref).state

    @_stripe_errors
    def _cancel(self, provider_ref: str):
        return self.client.v1.payment_intents.cancel(provider_ref)

    @_stripe_errors
    def refund(self, provider_ref: str, amount_minor: int, idempotency_key: str) -> str:
        refund = self.client.v1.refunds.create(
            params={"payment_intent": provider_ref, "amount": amount_minor},
            options={"idempotency_key": idempotency_key},
        )
        if refund.status in ("failed", "canceled"):
            raise GatewayRefused(f"stripe refund {refund.id} {refund.status}")
        return refund.id


def _view(intent) -> Intent:
    if intent.status == "succeeded":
        state = IntentState.SUCCEEDED
    elif intent.status == "canceled":
        state = IntentState.CANCELED
    elif intent.status == "requires_payment_method" and intent.last_payment_error:
        state = IntentState.FAILED
    else:
        state = IntentState.PENDING
    return Intent(intent.id, state, intent.client_secret)


def configured_gateway_name(app: Flask) -> str:
    """``stripe`` when a secret key is configured, else ``sandbox``."""
    return STRIPE if app.config.get("STRIPE_SECRET_KEY") else SANDBOX


def gateway_for(app: Flask, provider: str | None = None) -> PaymentGateway:
    """The gateway for ``provider`` (default: the configured one), one per app."""
    provider = provider or configured_gateway_name(app)
    gateways: dict[str, PaymentGateway] = app.extensions.setdefault(_EXTENSION, {})
    if provider not in gateways:
        if provider == SANDBOX:
            gateways[provider] = SandboxGateway()
        elif provider == DESK:
            gateways[provider] = DeskGateway()
        elif provider == STRIPE:
            key = app.config.get("STRIPE_SECRET_KEY")
            if not key:
                raise GatewayError("a Stripe payment needs STRIPE_SECRET_KEY")
            gateways[provider] = StripeGateway(key, app.config.get("STRIPE_API_BASE_URL"))
        else:
            raise GatewayError(f"unknown payment provider {provider!r}")
    return gateways[provider]
