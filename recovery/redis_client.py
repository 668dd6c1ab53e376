"""The app's Redis client (one pooled client per app), or None in the embedded mode, and
the Redis names that the web process and the workers share."""

from __future__ import annotations

from flask import Flask, current_app
from redis import Redis

_EXTENSION = "recovery.redis"

QUEUE_NAME = "default"  # the RQ queue every job goes to
HEARTBEAT_KEY = "slot_recovery:heartbeat"  # when the last sweep finished; read by /healthz


def redis_for(app: Flask) -> Redis | None:
    url = app.config.get("REDIS_URL")
    if not url:
        return None
    client = app.extensions.get(_EXTENSION)
    if client is None:
        # Short timeouts: a Redis outage must fail fast, not hang a webhook.
        client = Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        app.extensions[_EXTENSION] = client
    return client


def current_redis() -> Redis | None:
    return redis_for(current_app)
