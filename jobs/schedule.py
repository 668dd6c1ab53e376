"""The periodic schedule, kept as data, and its idempotent registration.

Each periodic job has a stable id, so registering again (every scheduler start) replaces
the entry instead of adding a second one; entries we no longer want are cancelled.
"""

from __future__ import annotations

from dataclasses import dataclass
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
    # Safety net behind the exact-time expiry jobs; also repairs work lost to a crash.
    Periodic("sweep", "jobs.tasks.sweep", interval_seconds=60, timeout_seconds=50),
    # Lets /healthz tell whether the scheduler and a worker are alive.
    Periodic("heartbeat", "jobs.tasks.heartbeat", interval_seconds=60, timeout_seconds=10),
    # Queues a sync of every connected calendar (each sync is its own job).
    Periodic(
        "sync_calendars", "jobs.tasks.sync_calendars", interval_seconds=600, timeout_seconds=60
    ),
)


def register(scheduler: Scheduler, schedule: tuple[Periodic, ...] = SCHEDULE) -> list[str]:
    """Make the scheduler hold exactly ``schedule``; returns the ids registered."""
    wanted = {p.job_id: p for p in schedule}
    for job in scheduler.get_jobs():
        if job.id.startswith(PREFIX) and job.id not in wanted:
            scheduler.cancel(job)
    for periodic in schedule:
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
    return list(wanted)
