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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from recovery.db import db
from recovery.effects import Effect, EffectKind


@dataclass(frozen=True)
class JobSpec:
    func: str  # import path, as RQ stores it
    timeout_seconds: int
    retry_intervals: tuple[int, ...]  # seconds between attempts after a failure
    # How many effects of this kind one call may carry out (their args, one after the
    # other): sending SMS in batches keeps several in flight per worker.
    batch: int = 1


JOBS: dict[EffectKind, JobSpec] = {}


def job(
    kind: EffectKind | None = None, *, timeout: int, retry: tuple[int, ...] = (), batch: int = 1
):
    """Bind a job function: one job, one commit. ``kind`` is the effect it carries out
    (None for periodic-only jobs, which the schedule names by path); ``batch`` > 1 lets
    one call take that many effects' args (the function takes ``*ids``)."""

    def bind(func: Callable) -> Callable:
        @functools.wraps(func)
        def run(*args):
            outcome = func(*args)
            db.session.commit()
            return outcome

        run.timeout_seconds = timeout
        if kind is not None:
            JOBS[kind] = JobSpec(f"{func.__module__}.{func.__name__}", timeout, retry, batch)
        return run

    return bind


def resolve(path: str) -> Callable:
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def retry_intervals(path: str) -> tuple[int, ...]:
    return next((s.retry_intervals for s in JOBS.values() if s.func == path), ())


@dataclass(frozen=True)
class Call:
    """One job to run: a function, its args, when (None: now) and, for a job at a time,
    the stable id that moves it instead of doubling it."""

    kind: EffectKind
    spec: JobSpec
    args: tuple
    at: datetime | None
    key: str | None


def calls(effects: Sequence[Effect], now: datetime) -> list[Call]:
    """The jobs that carry out ``effects``: one per effect, except that effects due now
    of a kind that takes a batch share calls of up to ``batch`` effects."""
    out: list[Call] = []
    batches: dict[EffectKind, list] = {}
    for effect in effects:
        spec = JOBS[effect.kind]
        if effect.at is not None and effect.at > now:
            out.append(Call(effect.kind, spec, effect.args, effect.at, "at-" + effect.key))
        elif spec.batch > 1:
            batches.setdefault(effect.kind, []).extend(effect.args)
        else:
            out.append(Call(effect.kind, spec, effect.args, None, None))
    for kind, args in batches.items():
        size = JOBS[kind].batch  # a batched kind's effects carry one id each
        for start in range(0, len(args), size):
            out.append(Call(kind, JOBS[kind], tuple(args[start : start + size]), None, None))
    return out


# Effects of a batched kind asked for at a time wait in a Redis set per second; one job
# per second (``jobs.tasks.run_due``) asks for them then, in batches.
RUN_DUE = "jobs.tasks.run_due"
DUE_KEEP_SECONDS = 24 * 3600


def due_key(kind: EffectKind, second: int) -> str:
    return f"due:{kind.value}:{second}"
