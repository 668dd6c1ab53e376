"""Helpers shared by tests (not fixtures): a recording dispatcher."""

from __future__ import annotations

from collections.abc import Sequence

from recovery.effects import Effect, Kind


class RecordingDispatcher:
    """Keeps the effects that were dispatched after a commit, in order."""

    def __init__(self) -> None:
        self.effects: list[Effect] = []

    def dispatch(self, effects: Sequence[Effect]) -> None:
        self.effects.extend(effects)

    def of_kind(self, kind: Kind) -> list[Effect]:
        return [e for e in self.effects if e.kind == kind]

    def clear(self) -> None:
        self.effects.clear()
