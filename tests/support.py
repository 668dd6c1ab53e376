"""Helpers shared by tests (not fixtures): recording dispatcher, clock, effect driver."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta

from flask import Flask

from jobs.dispatch import JOBS, resolve
from recovery.effects import Effect, EffectKind


class RecordingDispatcher:
    """Keeps the effects that were dispatched after a commit, in order."""

    def __init__(self) -> None:
        self.effects: list[Effect] = []

    def dispatch(self, effects: Sequence[Effect]) -> None:
        self.effects.extend(effects)

    def of_kind(self, kind: EffectKind) -> list[Effect]:
        return [e for e in self.effects if e.kind == kind]

    def clear(self) -> None:
        self.effects.clear()


class Clock:
    """A clock the test moves by hand; installed on an app, ``utcnow()`` reads it."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


@contextmanager
def installed(app: Flask, name: str, value) -> Iterator:
    """Put ``value`` in ``app.extensions[name]`` for the block, then restore what was there."""
    missing = object()
    original = app.extensions.get(name, missing)
    app.extensions[name] = value
    try:
        yield value
    finally:
        if original is missing:
            app.extensions.pop(name, None)
        else:
            app.extensions[name] = original


class Driver:
    """Runs the recorded effects through the real job functions, each when it is due.

    Time is the test's ``Clock``: effects scheduled for later wait until the clock passes
    their time, like rq-scheduler would, so a whole loop can be driven in time order.
    """

    def __init__(self, app: Flask, recorder: RecordingDispatcher, clock: Clock) -> None:
        self.app, self.recorder, self.clock = app, recorder, clock
        self.ran: list[Effect] = []

    def due(self) -> list[Effect]:
        return [e for e in self.recorder.effects if e.at is None or e.at <= self.clock.now]

    def run_due(self, limit: int = 100) -> list[Effect]:
        ran: list[Effect] = []
        for _ in range(limit):
            due = sorted(self.due(), key=lambda e: e.at or self.clock.now)
            if not due:
                return ran
            effect = due[0]
            self.recorder.effects.remove(effect)
            with self.app.app_context():
                resolve(JOBS[effect.kind].func)(*effect.args)
            ran.append(effect)
            self.ran.append(effect)
        raise AssertionError("effects keep coming: a loop that never settles")
