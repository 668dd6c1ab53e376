"""Locks of the recovery loop: row locks in one order, and a short Redis lock per slot.

Every transition on an opening first locks the opening's row (``SELECT ... FOR UPDATE``),
then re-reads what it needs, so transitions on one opening run one at a time in any
process. Rows are always locked in the same order: the opening, then the appointment,
then its payment. That order is what keeps a staff cancel and a payment confirmation
from deadlocking.

The Redis slot lock only keeps concurrent YES replies from piling onto the database.
Correctness never depends on it: the database (row lock on the opening, conditional
updates, constraints) alone yields one winner if Redis is down or the lock expires.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from redis.exceptions import LockError, RedisError
from sqlalchemy import select
from sqlalchemy.orm import Session

from recovery.db import lock_row
from recovery.models import Appointment, SlotOpening
from recovery.redis_client import current_redis

log = logging.getLogger(__name__)

LOCK_TTL_SECONDS = 10  # longer than an accept takes; expiry only matters after a crash
WAIT_SECONDS = 5


def lock_opening(session: Session, opening_id: int) -> SlotOpening | None:
    return lock_row(session, SlotOpening, opening_id)


def reload(session: Session, model, ident: int):
    """Re-read a row after taking the opening's lock (another transaction may have moved it)."""
    return session.scalar(
        select(model).where(model.id == ident).execution_options(populate_existing=True)
    )


def lock_booking(session: Session, appointment_id: int) -> Appointment | None:
    """Lock a booking's rows in the one order every transition uses: its source opening
    (if it came from one), then the appointment; payments are locked after these."""
    appt = session.get(Appointment, appointment_id)
    if appt is None:
        return None
    if appt.source_slot_opening_id:
        lock_opening(session, appt.source_slot_opening_id)
    return lock_row(session, Appointment, appointment_id)


@contextmanager
def slot_lock(opening_id: int) -> Iterator[bool]:
    """Hold the slot's lock while the body runs; yields whether the lock was taken."""
    redis = current_redis()
    if redis is None:
        yield False
        return
    # redis-py's Lock stores a random token and releases with a Lua check of that token,
    # so a holder whose lock expired never deletes someone else's.
    lock = redis.lock(
        f"slot-lock:{opening_id}", timeout=LOCK_TTL_SECONDS, blocking_timeout=WAIT_SECONDS
    )
    try:
        acquired = bool(lock.acquire())
    except RedisError as exc:
        log.error("slot lock unavailable (%s); relying on the database guard", exc)
        yield False
        return
    try:
        yield acquired
    finally:
        if acquired:
            try:
                lock.release()
            except (LockError, RedisError) as exc:
                log.warning("slot lock release failed (%s); it expires by itself", exc)
