"""The periodic schedule, kept as data, its idempotent registration, and the scheduler
process that keeps it registered.

Each periodic job has a stable id, so registering again replaces the entry instead of
adding a second one; entries we no longer want are cancelled. The schedule lives only in
Redis, which can lose it (a restart without persistence, a flush, an evicted key), so the
scheduler process puts back whatever is missing on every pass (``PeriodicScheduler``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from rq_scheduler import Scheduler

PREFIX = "periodic-"


@dataclass(frozen=True)
class Periodic:
    name: str
    func: str  # import path of the job function
    interval_seconds: int
    timeout_seconds: int

    @property
    def job_id(self) -> str:
        return PREFIX + self.name


SCHEDULE: tuple[Periodic, ...] = (
    # Safety net behind the exact-time expiry jobs; also repairs work lost to a crash or
    # to a lost Redis. Each finished sweep is the heartbeat /healthz reads. Its interval
    # is the app's SWEEP_INTERVAL_SECONDS (``schedule_for``).
    Periodic("sweep", "jobs.tasks.sweep", interval_seconds=60, timeout_seconds=50),
    # Queues a sync of every connected calendar (each sync is its own job).
    Periodic(
        "sync_calendars", "jobs.tasks.sync_calendars", interval_seconds=600, timeout_seconds=60
    ),
)


def schedule_for(config: Mapping) -> tuple[Periodic, ...]:
    """The schedule an app runs: ``SCHEDULE`` with the sweep's configured interval."""
    interval = config["SWEEP_INTERVAL_SECONDS"]
    return tuple(
        replace(p, interval_seconds=interval) if p.name == "sweep" else p for p in SCHEDULE
    )


def _schedule(scheduler: Scheduler, periodic: Periodic) -> None:
    """Due now, then every interval; the stable id replaces an earlier entry."""
    scheduler.schedule(
        scheduled_time=datetime.now(UTC),
        func=periodic.func,
        interval=periodic.interval_seconds,
        repeat=None,
        id=periodic.job_id,
        timeout=periodic.timeout_seconds,
        # Keep the result longer than the interval so a slow run is visible.
        result_ttl=periodic.interval_seconds * 10,
    )


def register(scheduler: Scheduler, schedule: tuple[Periodic, ...] = SCHEDULE) -> list[str]:
    """Make the scheduler hold exactly ``schedule``; returns the ids registered."""
    wanted = {p.job_id: p for p in schedule}
    for job in scheduler.get_jobs():
        if job.id.startswith(PREFIX) and job.id not in wanted:
            scheduler.cancel(job)
    for periodic in schedule:
        _schedule(scheduler, periodic)
    return list(wanted)


def restore_missing(scheduler: Scheduler, schedule: tuple[Periodic, ...]) -> list[str]:
    """Register again each periodic job Redis no longer holds; returns their ids.

    One round trip when nothing is missing: per job, its entry in the scheduled set and
    its job hash (rq-scheduler drops an entry whose hash is gone, so either missing means
    the job would never run again). A job taken for a run is re-added to the set by
    rq-scheduler in the same pass, so a healthy job is never seen missing."""
    pipe = scheduler.connection.pipeline(transaction=False)
    for periodic in schedule:
        pipe.zscore(scheduler.scheduled_jobs_key, periodic.job_id)
        pipe.exists(scheduler.job_class.key_for(periodic.job_id))
    found = pipe.execute()
    restored = []
    for i, periodic in enumerate(schedule):
        scheduled, stored = found[2 * i], found[2 * i + 1]
        if scheduled is None or not stored:
            _schedule(scheduler, periodic)
            restored.append(periodic.job_id)
    return restored


class PeriodicScheduler(Scheduler):
    """rq-scheduler's loop (``flask jobs scheduler``), which also keeps the periodic jobs
    registered: each pass, under rq-scheduler's lock, it first puts back any that Redis
    lost. A restored job is due at once, so the sweep that follows repairs what the lost
    exact-time jobs (offer expiries, payment deadlines) left overdue in the database."""

    def __init__(self, schedule: tuple[Periodic, ...], **kwargs) -> None:
        super().__init__(**kwargs)
        self.schedule_to_keep = schedule

    def enqueue_jobs(self):
        restored = restore_missing(self, self.schedule_to_keep)
        if restored:
            self.log.warning("periodic jobs missing from Redis, registered again: %s", restored)
        return super().enqueue_jobs()
