"""``GET /healthz``: is the database reachable, the queue, and does the sweep still run?

The sweep is the safety net behind every exact-time job, and under RQ its schedule lives
in Redis. When it stops (the schedule lost with Redis, no worker, a sweep failing each
time) nothing overdue is repaired any more, so that is a failure, not a detail.
"""

from __future__ import annotations

import logging
from datetime import datetime

from flask import Blueprint, current_app, jsonify
from sqlalchemy import text

from recovery.db import db, utcnow
from recovery.effects import DISPATCHER_EXTENSION
from recovery.redis_client import HEARTBEAT_KEY, QUEUE_NAME, current_redis

log = logging.getLogger(__name__)
bp = Blueprint("health", __name__)

# The sweep counts as stopped after this many of its intervals without a finished run.
STALE_AFTER_SWEEPS = 3


def _check_database() -> dict:
    try:
        db.session.execute(text("SELECT 1"))
        return {"ok": True, "backend": db.engine.dialect.name}
    except Exception as exc:
        db.session.rollback()
        log.warning("healthz: database unreachable: %s", exc)
        return {"ok": False, "error": type(exc).__name__}


def _check_queue() -> dict:
    redis = current_redis()
    if redis is None:
        return {"ok": True, "backend": "in-process"}
    try:
        redis.ping()
        return {"ok": True, "backend": "rq", "queued": redis.llen(f"rq:queue:{QUEUE_NAME}")}
    except Exception as exc:
        log.warning("healthz: redis unreachable: %s", exc)
        return {"ok": False, "error": type(exc).__name__}


def _check_sweep() -> dict:
    redis = current_redis()
    if redis is None:
        # Embedded: the job thread keeps the periodic schedule in its own heap, so the
        # sweep runs as long as the thread does.
        dispatcher = current_app.extensions.get(DISPATCHER_EXTENSION)
        return {"ok": bool(getattr(dispatcher, "running", False)), "backend": "in-process"}
    max_age = STALE_AFTER_SWEEPS * current_app.config["SWEEP_INTERVAL_SECONDS"]
    try:
        stamp = redis.get(HEARTBEAT_KEY)
        last = datetime.fromisoformat(stamp.decode()) if stamp else None
    except Exception as exc:
        return {"ok": False, "error": type(exc).__name__}
    report = {"last": last and last.isoformat(), "max_age_seconds": max_age}
    if last is None:
        log.warning("healthz: no sweep on record (its schedule lost, or no worker)")
        return {"ok": False, "error": "missing", **report}
    if (utcnow() - last).total_seconds() > max_age:
        log.warning("healthz: the last sweep finished at %s", last.isoformat())
        return {"ok": False, "error": "stale", **report}
    return {"ok": True, **report}


@bp.get("/healthz")
def healthz():
    report = {"database": _check_database(), "queue": _check_queue(), "sweep": _check_sweep()}
    failing = [part for part, result in report.items() if not result["ok"]]
    report["status"] = "ok" if not failing else "failing: " + ", ".join(failing)
    report["env"] = current_app.config["APP_ENV"]
    return jsonify(report), (503 if failing else 200)
