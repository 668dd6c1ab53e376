"""Refunds: by the shop's policy on cancellation, in full for a late payment, or by staff.

A refund is recorded (``pending``) and reserved against its payment in the domain
transaction, and the gateway is called by a job after the commit, with the refund's
idempotency key: a retried job, a double click or a repeated cancellation never refunds
twice, and ``payments.refunded_minor <= amount_minor`` (a CHECK constraint, taken under
the payment's row lock) means no refund ever exceeds what was paid.
"""

from __future__ import annotations

import logging
import secrets
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from recovery import effects
from recovery.db import lock_row, try_insert, utcnow
from recovery.effects import EffectKind
from recovery.models import Appointment, Payment, PaymentStatus, Refund, RefundStatus, Shop
from recovery.payments.gateway import GatewayRefused, PaymentGateway
from recovery.payments.money import format_money

log = logging.getLogger(__name__)


class RefundError(ValueError):
    """A refund that cannot be made; the message says why, for staff."""


def policy_refund_minor(payment: Payment, shop: Shop, starts_at: datetime, now: datetime) -> int:
    """What cancelling a paid booking gives back (docs/architecture.md, "Where each rule lives").

    ``full_refund_hours`` or more before the start: everything still refundable. Less:
    ``late_refund_percent`` of the payment, rounded half up to the minor unit.
    """
    if payment.refundable_minor <= 0:
        return 0
    if starts_at - now >= timedelta(hours=shop.full_refund_hours):
        return payment.refundable_minor
    share = (payment.amount_minor * shop.late_refund_percent + 50) // 100
    return min(share, payment.refundable_minor)


# Staff refunds have keys of their own kind, made by the server; the policy's refunds use
# ``cancel-<payment id>`` and ``late-<payment id>``. Distinct prefixes mean a staff refund
# can never take the key of a refund the policy makes later.
STAFF_KEY_PREFIX = "staff-"


def new_idempotency_key() -> str:
    """For a staff refund form: one key per form shown, so a double submit refunds once."""
    return STAFF_KEY_PREFIX + secrets.token_hex(12)


def request_refund(
    session: Session,
    payment_id: int,
    amount_minor: int,
    reason: str,
    idempotency_key: str,
    staff_id: int | None = None,
    now: datetime | None = None,
) -> Refund:
    """Record a refund and reserve it against the payment; the gateway call follows the
    commit. Asking again with the same key, payment and amount returns the first refund
    unchanged; the same key for another payment or amount is refused, never taken as done.
    """
    now = now or utcnow()
    if staff_id is not None and not idempotency_key.startswith(STAFF_KEY_PREFIX):
        raise RefundError("a staff refund needs a key made for a staff refund")
    payment = lock_row(session, Payment, payment_id)
    if payment is None:
        raise RefundError(f"no payment {payment_id}")
    existing = session.scalar(select(Refund).where(Refund.idempotency_key == idempotency_key))
    if existing is not None:
        return _same_refund(existing, payment, amount_minor)
    if payment.status != PaymentStatus.SUCCEEDED:
        raise RefundError(f"only a succeeded payment can be refunded (this is {payment.status})")
    if amount_minor <= 0:
        raise RefundError("a refund must be more than zero")
    if amount_minor > payment.refundable_minor:
        left = format_money(payment.refundable_minor, payment.currency)
        raise RefundError(f"at most {left} of this payment can still be refunded")

    refund = try_insert(
        session,
        Refund(
            payment_id=payment.id,
            amount_minor=amount_minor,
            reason=reason[:200],
            idempotency_key=idempotency_key,
            requested_by_id=staff_id,
            created_at=now,
        ),
    )
    if refund is None:  # the same key, committed by a concurrent request meanwhile
        existing = session.scalar(select(Refund).where(Refund.idempotency_key == idempotency_key))
        return _same_refund(existing, payment, amount_minor)
    payment.refunded_minor += amount_minor
    session.flush()
    effects.request(session, EffectKind.REFUND, refund.id)
    log.info("refund %s of %s requested on payment %s", refund.id, amount_minor, payment.id)
    return refund


def _same_refund(existing: Refund, payment: Payment, amount_minor: int) -> Refund:
    """A repeated request is the refund already recorded under its key, or an error.

    Taking a different refund as done would report money that was never refunded (the
    customer's text says what was asked for), so a key names exactly one payment and
    amount.
    """
    if existing.payment_id != payment.id or existing.amount_minor != amount_minor:
        done = format_money(existing.amount_minor, existing.payment.currency)
        raise RefundError(
            f"this refund's key was already used for refund #{existing.id} ({done} of "
            f"payment #{existing.payment_id}): open the refund form again"
        )
    return existing


def refund_cancelled_booking(session: Session, appt: Appointment, now: datetime) -> int:
    """Refund every succeeded payment of a cancelled booking by the shop's policy.

    Returns the total requested (minor units), for the customer's text.
    """
    total = 0
    for payment in appt.payments:
        amount = policy_refund_minor(payment, appt.shop, appt.starts_at, now)
        if amount > 0:
            request_refund(
                session, payment.id, amount, "booking cancelled", f"cancel-{payment.id}", now=now
            )
            total += amount
    return total


def carry_out(session: Session, refund_id: int, gateway: PaymentGateway, now: datetime) -> str:
    """The job's half: call the gateway once for a pending refund.

    A refusal fails the refund and releases its reservation; any other gateway error
    propagates so the job is retried with the same idempotency key. Only this refund's
    row stays locked during the call, and concurrent runs skip it rather than wait.
    """
    refund = session.scalar(
        select(Refund)
        .where(Refund.id == refund_id, Refund.status == RefundStatus.PENDING)
        .with_for_update(skip_locked=True)
    )
    if refund is None:
        return "nothing to do"
    payment = refund.payment
    try:
        # Our key is unique in this database; the payment's random token makes it unique
        # at the gateway too (deployments may share one Stripe account).
        key = f"slot-recovery-refund-{payment.token}-{refund.idempotency_key}"
        ref = gateway.refund(payment.provider_ref or "", refund.amount_minor, key)
    except GatewayRefused as exc:
        refund.status = RefundStatus.FAILED
        refund.error = str(exc)[:255]
        refund.completed_at = now
        payment = lock_row(session, Payment, payment.id)
        payment.refunded_minor -= refund.amount_minor
        log.warning("refund %s refused: %s", refund.id, exc)
        return "failed"
    refund.status = RefundStatus.SUCCEEDED
    refund.provider_ref = ref
    refund.completed_at = now
    return "succeeded"
