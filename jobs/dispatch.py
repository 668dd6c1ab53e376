"""Dispatchers: what carries out the effects the domain requested, after the commit.

* ``RQDispatcher`` (production): RQ for work to do now, rq-scheduler for work at a time.
* ``ThreadDispatcher`` (embedded default): one in-process thread that runs the same job
  functions now or at their time, so the demo needs no Redis and expiries still happen.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from flask import Flask
from rq import Queue, Retry
from rq_scheduler.utils import to_unix

from jobs import tasks  # noqa: F401 (binds every job in the registry)
from jobs.connection import queue_for, scheduler_for
from jobs.registry import (  # noqa: F401 (JOBS: looked up here)
    DUE_KEEP_SECONDS,
    JOBS,
    RUN_DUE,
    calls,
    due_key,
    resolve,
    retry_intervals,
)
from jobs.schedule import schedule_for
from recovery.effects import Effect

log = logging.getLogger(__name__)


class RQDispatcher:
    """Every job of one commit goes to Redis in one round trip (a pipeline): the sweep's
    catch-up commits thousands at once."""

    def __init__(self, app: Flask) -> None:
        self.app = app

    def dispatch(self, effects: Sequence[Effect]) -> None:
        queue = queue_for(self.app)
        scheduler = None
        pipe = queue.connection.pipeline()
        now_jobs = []
        for call in calls(effects, datetime.now(UTC)):
            spec = call.spec
            if call.at is None:
                intervals = list(spec.retry_intervals)
                retry = Retry(max=len(intervals), interval=intervals) if intervals else None
                now_jobs.append(
                    Queue.prepare_data(
                        spec.func,
                        call.args,
                        timeout=spec.timeout_seconds,
                        retry=retry,
                        result_ttl=600,
                        failure_ttl=7 * 24 * 3600,
                    )
                )
            elif spec.batch > 1:
                # Many at one time (reminders of bookings on the hour, texts waiting for
                # their number's turn): gathered per second in Redis, one job per second.
                second = math.ceil(call.at.timestamp())
                pipe.sadd(due_key(call.kind, second), *call.args)
                pipe.expire(due_key(call.kind, second), DUE_KEEP_SECONDS)
                at = datetime.fromtimestamp(second, UTC)
                scheduler = scheduler or scheduler_for(self.app)
                self._schedule(scheduler, pipe, RUN_DUE, (call.kind.value, second),
                               f"at-due-{call.kind.value}-{second}", at, 30)  # fmt: skip
            else:
                scheduler = scheduler or scheduler_for(self.app)
                # A stable id: scheduling the same effect again moves it, never doubles it.
                self._schedule(scheduler, pipe, spec.func, call.args, call.key, call.at,
                               spec.timeout_seconds)  # fmt: skip
        if now_jobs:
            queue.enqueue_many(now_jobs, pipeline=pipe)
        pipe.execute()

    @staticmethod
    def _schedule(scheduler, pipe, func: str, args: tuple, job_id: str, at, timeout: int):
        """rq-scheduler's ``enqueue_at``, written into the pipeline."""
        job = scheduler._create_job(
            func, args=args, id=job_id, timeout=timeout, result_ttl=600, commit=False
        )
        job.save(pipeline=pipe)
        pipe.zadd(scheduler.scheduled_jobs_key, {job.id: to_unix(at)})


@dataclass(order=True)
class _Entry:
    when: float  # unix time; 0 means now
    seq: int
    func: str = field(compare=False)
    args: tuple = field(compare=False)
    attempt: int = field(default=0, compare=False)
    every: int = field(default=0, compare=False)  # periodic jobs repeat every N seconds


class ThreadDispatcher:
    """Runs jobs in one background thread of this process, each at its time.

    Failed jobs are retried with the same backoff as under RQ. The periodic schedule
    (``jobs.schedule.schedule_for``) runs here too, from the thread's own heap, so it is
    lost only with the thread: /healthz reads ``running``.
    """

    def __init__(self, app: Flask) -> None:
        self.app = app
        self._heap: list[_Entry] = []
        self._counter = itertools.count()
        self._wakeup = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopping = False

    def dispatch(self, effects: Sequence[Effect]) -> None:
        for call in calls(effects, datetime.now(UTC)):
            when = call.at.timestamp() if call.at else 0.0
            self._push(when, call.spec.func, call.args)

    def start(self) -> None:
        """Start the thread and the periodic jobs (once)."""
        with self._wakeup:
            if self._thread is not None:
                return
            for periodic in schedule_for(self.app.config):
                self._push(0.0, periodic.func, (), every=periodic.interval_seconds)
            self._thread = threading.Thread(target=self._run, name="jobs", daemon=True)
            self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self) -> None:
        with self._wakeup:
            self._stopping = True
            self._wakeup.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _push(self, when: float, func: str, args: tuple, attempt: int = 0, every: int = 0):
        with self._wakeup:
            entry = _Entry(when, next(self._counter), func, args, attempt, every)
            heapq.heappush(self._heap, entry)
            self._wakeup.notify_all()

    def _run(self) -> None:
        while True:
            with self._wakeup:
                while not self._stopping:
                    now = time.time()
                    if self._heap and self._heap[0].when <= now:
                        break
                    self._wakeup.wait((self._heap[0].when - now) if self._heap else None)
                if self._stopping:
                    return
                entry = heapq.heappop(self._heap)
            self._run_one(entry)

    def _run_one(self, entry: _Entry) -> None:
        try:
            with self.app.app_context():
                resolve(entry.func)(*entry.args)
        except Exception:
            log.exception("job %s%r failed", entry.func, entry.args)
            intervals = retry_intervals(entry.func)
            if not entry.every and entry.attempt < len(intervals):
                retry_at = time.time() + intervals[entry.attempt]
                self._push(retry_at, entry.func, entry.args, attempt=entry.attempt + 1)
        if entry.every:
            self._push(time.time() + entry.every, entry.func, entry.args, every=entry.every)
