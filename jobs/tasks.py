"""RQ job functions. Thin: ids in, reload inside an app context, call ``recovery``, commit.

Every job is idempotent: it re-reads state and does nothing when there is nothing to do,
so a retry, a duplicate enqueue or a sweep racing an exact-time job is harmless.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from jobs.context import job_app
from recovery import loop, messaging, refunds, settlement
from recovery.db import db, utcnow
from recovery.gateway import gateway_for
from recovery.http.health import HEARTBEAT_KEY
from recovery.models import Payment, Refund
from recovery.redis_client import current_redis
from recovery.sms import sender_for
from recovery.sweep import sweep_batch

log = logging.getLogger(__name__)


def heartbeat() -> str:
    """Record that the scheduler and a worker are alive (shown by /healthz)."""
    with job_app().app_context():
        stamp = datetime.now(UTC).isoformat()
        redis = current_redis()
        if redis is not None:
            redis.set(HEARTBEAT_KEY, stamp, ex=600)
        return stamp


def send_message(message_id: int) -> str:
    """Deliver one queued SMS. A provider hiccup raises, so RQ retries with backoff."""
    app = job_app()
    with app.app_context():
        outcome = messaging.deliver(db.session, message_id, sender_for(app), utcnow())
        db.session.commit()
        return outcome


def _one_transition(transition, ident: int):
    """Run one domain transition on a fresh session and commit it: one job, one commit."""
    with job_app().app_context():
        outcome = transition(db.session, ident)
        db.session.commit()
        return outcome


def offer_next(opening_id: int) -> str:
    return _one_transition(loop.offer_next, opening_id)


def expire_offer(offer_id: int) -> str:
    return _one_transition(loop.expire_offer, offer_id)


def release_hold(appointment_id: int) -> str:
    """The payment deadline: confirm if the gateway has the money, else release the slot."""
    app = job_app()
    with app.app_context():
        outcome = settlement.release_unless_paid(
            db.session, appointment_id, lambda provider: gateway_for(app, provider), utcnow()
        )
        db.session.commit()
        return outcome


def _payment_job(work, payment_id: int) -> str:
    """Run ``work`` with the payment's own gateway (so config changes strand nothing)."""
    app = job_app()
    with app.app_context():
        payment = db.session.get(Payment, payment_id)
        if payment is None:
            return "no such payment"
        outcome = work(db.session, payment_id, gateway_for(app, payment.provider), utcnow())
        db.session.commit()
        return outcome


def sync_payment(payment_id: int) -> str:
    """Apply the gateway's current state of a payment (asked for by each webhook event)."""
    return _payment_job(settlement.sync_payment, payment_id)


def cancel_payment(payment_id: int) -> str:
    """Cancel a released payment's intent; a gateway outage raises, so RQ retries."""
    return _payment_job(settlement.cancel_at_gateway, payment_id)


def refund(refund_id: int) -> str:
    """Make one recorded refund at the gateway, with its idempotency key."""
    app = job_app()
    with app.app_context():
        row = db.session.get(Refund, refund_id)
        if row is None:
            return "no such refund"
        gateway = gateway_for(app, row.payment.provider)
        outcome = refunds.carry_out(db.session, refund_id, gateway, utcnow())
        db.session.commit()
        return outcome


SWEEP_BATCH = 200
SWEEP_MAX_BATCHES = 50


def sweep() -> dict:
    """Catch up with everything due; one transaction per batch."""
    with job_app().app_context():
        totals: dict[str, int] = {}
        for n in range(SWEEP_MAX_BATCHES):
            report = sweep_batch(db.session, utcnow(), SWEEP_BATCH, requeue_messages=n == 0)
            db.session.commit()
            for key, value in vars(report).items():
                totals[key] = totals.get(key, 0) + value
            if report.transitions < SWEEP_BATCH:
                break
        if any(totals.values()):
            log.info("sweep: %s", totals)
        return totals
