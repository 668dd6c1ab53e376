"""RQ job functions. Thin: ids in, reload, call ``recovery``; ``@job`` commits.

Every job is idempotent: it re-reads state and does nothing when there is nothing to do,
so a retry, a duplicate enqueue or a sweep racing an exact-time job is harmless. Jobs run
inside an app context (see ``jobs.registry``) and read the app through ``current_app``.
"""

from __future__ import annotations

from flask import current_app

from jobs import sending
from jobs.registry import due_key, job
from recovery import effects
from recovery.availability.calendars import sync as calendar_sync
from recovery.booking import holds
from recovery.db import db, utcnow
from recovery.effects import EffectKind
from recovery.messaging import reminders
from recovery.models import Payment, Refund
from recovery.offers import offering
from recovery.offers.withdraw import withdraw_blocked_openings
from recovery.payments import refunds
from recovery.payments.gateway import gateway_for
from recovery.redis_client import HEARTBEAT_KEY, current_redis
from recovery.sweep import catch_up_offers as run_catch_up
from recovery.sweep import sweep as run_sweep

# Provider hiccups are retried with backoff; the jobs themselves never act twice.
PROVIDER_RETRY = (2, 10, 30, 120, 600)
LOOP_RETRY = (1, 5, 30)


class CalendarUnavailable(RuntimeError):
    """The calendar's provider failed for now; raised after the error is committed so RQ
    retries the job with its backoff."""


def _gateways(provider: str):
    return gateway_for(current_app, provider)


@job(EffectKind.SEND_MESSAGE, timeout=120, retry=PROVIDER_RETRY, batch=sending.SEND_BATCH)
def send_message(*message_ids: int) -> str:
    """Deliver SMS, each never twice, several at once (``jobs.sending``). A provider
    hiccup raises after what it taught us is committed, so RQ retries with backoff."""
    return sending.send_batch(message_ids)


@job(timeout=30, retry=PROVIDER_RETRY)
def run_due(kind: str, second: int) -> int:
    """The effects of a batched kind due in this second (``jobs.dispatch``): asked for now,
    so they share jobs of up to their batch. Ids lost with Redis are found by the sweep
    (texts still queued, reminders due)."""
    redis = current_redis()
    key = due_key(EffectKind(kind), second)
    ids = sorted(int(i) for i in redis.smembers(key))
    for ident in ids:
        effects.request(db.session, EffectKind(kind), ident)
    db.session.commit()
    redis.delete(key)
    return len(ids)


@job(EffectKind.OFFER_NEXT, timeout=30, retry=LOOP_RETRY)
def offer_next(opening_id: int) -> str:
    return offering.offer_next(db.session, opening_id)


@job(EffectKind.SEND_REMINDER, timeout=60, retry=LOOP_RETRY, batch=50)
def send_reminder(*appointment_ids: int) -> str:
    """The reminder time: queue each reminder text once (it re-checks everything); the
    texts of many bookings on the same hour go out together."""
    now = utcnow()
    outcomes = [reminders.send_reminder(db.session, i, now) for i in appointment_ids]
    return outcomes[0] if len(outcomes) == 1 else f"{outcomes.count('sent')} sent"


@job(EffectKind.EXPIRE_OFFER, timeout=30, retry=LOOP_RETRY)
def expire_offer(offer_id: int) -> str:
    return offering.expire_offer(db.session, offer_id)


@job(EffectKind.RELEASE_HOLD, timeout=30, retry=LOOP_RETRY)
def release_hold(appointment_id: int) -> str:
    """The payment deadline: confirm if the gateway has the money, else release the slot."""
    return holds.release_unless_paid(db.session, appointment_id, _gateways, utcnow())


def _with_payment_gateway(work, payment_id: int) -> str:
    """Run ``work`` with the payment's own gateway (so config changes strand nothing)."""
    payment = db.session.get(Payment, payment_id)
    if payment is None:
        return "no such payment"
    return work(db.session, payment_id, _gateways(payment.provider), utcnow())


@job(EffectKind.SYNC_PAYMENT, timeout=30, retry=PROVIDER_RETRY)
def sync_payment(payment_id: int) -> str:
    """Apply the gateway's current state of a payment (asked for by each webhook event)."""
    return _with_payment_gateway(holds.sync_payment, payment_id)


@job(EffectKind.CANCEL_PAYMENT, timeout=30, retry=PROVIDER_RETRY)
def cancel_payment(payment_id: int) -> str:
    """Cancel a released payment's intent; a gateway outage raises, so RQ retries."""
    return _with_payment_gateway(holds.cancel_at_gateway, payment_id)


@job(EffectKind.REFUND, timeout=30, retry=PROVIDER_RETRY)
def refund(refund_id: int) -> str:
    """Make one recorded refund at the gateway, with its idempotency key."""
    row = db.session.get(Refund, refund_id)
    if row is None:
        return "no such refund"
    return refunds.carry_out(db.session, refund_id, _gateways(row.payment.provider), utcnow())


@job(EffectKind.SWEEP, timeout=50)
def sweep() -> dict:
    """Catch up with everything due; one transaction per batch. A finished sweep is the
    heartbeat: /healthz fails when none came for three sweep intervals (the schedule was
    lost, or no worker runs it, or the sweep keeps failing)."""
    totals = run_sweep(db.session, utcnow)
    redis = current_redis()
    if redis is not None:
        redis.set(HEARTBEAT_KEY, utcnow().isoformat())
    return totals


@job(EffectKind.CATCH_UP_OFFERS, timeout=50)
def catch_up_offers() -> int:
    """Expire due offers and offer their openings on, alongside the sweep that asked."""
    return run_catch_up(db.session, utcnow)


@job(EffectKind.SYNC_CALENDAR, timeout=120, retry=PROVIDER_RETRY)
def sync_calendar(connection_id: int) -> str:
    """Mirror one calendar into busy blocks, then withdraw the openings that its new or
    moved blocks cover (the availability rule: a busy stylist's slot is gone)."""
    now = utcnow()
    providers = calendar_sync.Providers.from_config(current_app.config)
    result = calendar_sync.sync_connection(db.session, connection_id, providers, now)
    covering = calendar_sync.blocks_covering_open_openings(db.session, result.changed_block_ids)
    for block_id in covering:
        withdraw_blocked_openings(db.session, block_id, now)
    if result.retry:
        db.session.commit()  # keep the recorded error; the retry comes with backoff
        raise CalendarUnavailable(f"calendar {connection_id}: provider unavailable")
    return f"{result.outcome}: {len(result.changed_block_ids)} changed, {result.deleted} deleted"


@job(timeout=60)
def sync_calendars() -> int:
    """Every 10 minutes: queue a sync of each connected calendar not in backoff."""
    due = calendar_sync.due_connections(db.session, utcnow())
    for connection_id in due:
        calendar_sync.request_sync(db.session, connection_id)
    return len(due)
