"""The Redis connection, RQ queue and rq-scheduler of an app, bound once per app."""

from __future__ import annotations

from flask import Flask
from redis import Redis
from rq import Queue
from rq_scheduler import Scheduler

from recovery.redis_client import QUEUE_NAME
from recovery.redis_client import redis_for as recovery_redis_for


def redis_for(app: Flask) -> Redis:
    client = recovery_redis_for(app)
    if client is None:
        raise RuntimeError("REDIS_URL is not configured: RQ needs Redis")
    return client


def queue_for(app: Flask) -> Queue:
    return Queue(QUEUE_NAME, connection=redis_for(app))


def scheduler_for(app: Flask) -> Scheduler:
    return Scheduler(queue=queue_for(app), connection=redis_for(app))
