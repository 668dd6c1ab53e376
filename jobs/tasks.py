"""RQ job functions. Thin: ids in, reload inside an app context, call ``recovery``, commit.

Every job is idempotent: it re-reads state and does nothing when there is nothing to do,
so a retry, a duplicate enqueue or a sweep racing an exact-time job is harmless.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from jobs.context import job_app
from recovery.http.health import HEARTBEAT_KEY
from recovery.redis_client import current_redis

log = logging.getLogger(__name__)


def heartbeat() -> str:
    """Record that the scheduler and a worker are alive (shown by /healthz)."""
    with job_app().app_context():
        stamp = datetime.now(UTC).isoformat()
        redis = current_redis()
        if redis is not None:
            redis.set(HEARTBEAT_KEY, stamp, ex=600)
        return stamp
