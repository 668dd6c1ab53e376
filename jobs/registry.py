"""Which function carries out each effect, with its timeout and retry, declared once.

A job function is bound with ``@job(...)`` where it is defined (as redash binds its
jobs): the decorator records its import path (what RQ stores), its timeout and the
backoff between retries, and commits the job's unit of work when it returns. The job
runs inside an app context pushed by whoever runs it: ``jobs.worker.AppWorker`` under
RQ, the in-process thread in the embedded mode, the test driver in tests.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from dataclasses import dataclass

from recovery.db import db
from recovery.effects import EffectKind


@dataclass(frozen=True)
class JobSpec:
    func: str  # import path, as RQ stores it
    timeout_seconds: int
    retry_intervals: tuple[int, ...]  # seconds between attempts after a failure


JOBS: dict[EffectKind, JobSpec] = {}


def job(kind: EffectKind | None = None, *, timeout: int, retry: tuple[int, ...] = ()):
    """Bind a job function: one job, one commit. ``kind`` is the effect it carries out
    (None for periodic-only jobs, which the schedule names by path)."""

    def bind(func: Callable) -> Callable:
        @functools.wraps(func)
        def run(*args):
            outcome = func(*args)
            db.session.commit()
            return outcome

        run.timeout_seconds = timeout
        if kind is not None:
            JOBS[kind] = JobSpec(f"{func.__module__}.{func.__name__}", timeout, retry)
        return run

    return bind


def resolve(path: str) -> Callable:
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def retry_intervals(path: str) -> tuple[int, ...]:
    return next((s.retry_intervals for s in JOBS.values() if s.func == path), ())
