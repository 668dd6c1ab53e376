"""A short Redis lock per slot: keeps concurrent YES replies from piling onto the database.

Correctness never depends on it: the database (row lock on the opening, conditional
updates, constraints) alone yields one winner if Redis is down or the lock expires.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from redis.exceptions import LockError, RedisError

from recovery.redis_client import current_redis

log = logging.getLogger(__name__)

LOCK_TTL_SECONDS = 10  # longer than an accept takes; expiry only matters after a crash
WAIT_SECONDS = 5


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
