"""``GET /healthz``: is the database reachable, and the queue?"""

from __future__ import annotations

import logging

from flask import Blueprint, current_app, jsonify
from sqlalchemy import text

from recovery.db import db
from recovery.redis_client import HEARTBEAT_KEY, QUEUE_NAME, current_redis

log = logging.getLogger(__name__)
bp = Blueprint("health", __name__)


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
        heartbeat = redis.get(HEARTBEAT_KEY)
        return {
            "ok": True,
            "backend": "rq",
            "queued": redis.llen(f"rq:queue:{QUEUE_NAME}"),
            "last_heartbeat": heartbeat.decode() if heartbeat else None,
        }
    except Exception as exc:
        log.warning("healthz: redis unreachable: %s", exc)
        return {"ok": False, "error": type(exc).__name__}


@bp.get("/healthz")
def healthz():
    report = {"database": _check_database(), "queue": _check_queue()}
    failing = [part for part, result in report.items() if not result["ok"]]
    report["status"] = "ok" if not failing else "failing: " + ", ".join(failing)
    report["env"] = current_app.config["APP_ENV"]
    return jsonify(report), (503 if failing else 200)
