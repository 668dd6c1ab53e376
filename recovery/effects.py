"""Side effects the domain *requests* and the app carries out after the commit.

A domain operation never sends an SMS or enqueues a job itself: it calls ``request`` and
the effect waits in the session until the transaction that justified it commits. A
rollback drops it. What carries effects out (RQ, a thread, a recorder) is wired by the app
as a ``Dispatcher``; ``recovery`` only names the effects (see ``EffectKind``).
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from flask import current_app, has_app_context
from sqlalchemy import event
from sqlalchemy.orm import Session, scoped_session

from recovery.db import RecoverySession

log = logging.getLogger(__name__)

_PENDING = "recovery.pending_effects"


class EffectKind(enum.StrEnum):
    SEND_MESSAGE = "send_message"  # args: message id
    OFFER_NEXT = "offer_next"  # args: opening id
    EXPIRE_OFFER = "expire_offer"  # args: offer id (runs at the offer's expires_at)
    RELEASE_HOLD = "release_hold"  # args: appointment id (runs at the payment deadline)
    SWEEP = "sweep"  # no args
    CATCH_UP_OFFERS = "catch_up_offers"  # no args (expire due offers alongside a sweep)
    SYNC_PAYMENT = "sync_payment"  # args: payment id (apply the gateway's current state)
    CANCEL_PAYMENT = "cancel_payment"  # args: payment id (close the gateway side)
    REFUND = "refund"  # args: refund id (call the gateway for a recorded refund)
    SEND_REMINDER = "send_reminder"  # args: appointment id (runs at the reminder time)
    SYNC_CALENDAR = "sync_calendar"  # args: calendar connection id


@dataclass(frozen=True)
class Effect:
    kind: EffectKind
    args: tuple[int, ...] = ()
    at: datetime | None = None  # run at this moment instead of now

    @property
    def key(self) -> str:
        """Stable identity, so the same effect requested twice is carried out once."""
        return "-".join([self.kind.value, *map(str, self.args)])


class Dispatcher(Protocol):
    def dispatch(self, effects: Sequence[Effect]) -> None: ...


def request(session: Session, kind: EffectKind, *args: int, at: datetime | None = None) -> Effect:
    effect = Effect(kind, tuple(args), at)
    if isinstance(session, scoped_session):
        session = session()
    if not session.in_transaction():
        session.connection()  # begin, so a rollback (which only fires inside one) drops it
    # An insertion-ordered set: the same effect asked for twice is carried out once.
    pending: dict[Effect, None] = session.info.setdefault(_PENDING, {})
    pending[effect] = None
    return effect


def pending(session: Session) -> list[Effect]:
    return list(session.info.get(_PENDING, {}))


def take_pending(session: Session) -> list[Effect]:
    """Remove and return the effects waiting for the commit, so no dispatcher sees them.

    For callers that carry effects out themselves, each at a time of their choosing (the
    demo's history runs them at their simulated times).
    """
    if isinstance(session, scoped_session):
        session = session()
    return list(session.info.pop(_PENDING, {}))


DISPATCHER_EXTENSION = "recovery.dispatcher"


def current_dispatcher() -> Dispatcher | None:
    """The dispatcher the running app wired in (each app has its own)."""
    if not has_app_context():
        return None
    return current_app.extensions.get(DISPATCHER_EXTENSION)


@event.listens_for(RecoverySession, "after_commit")
def _dispatch_after_commit(session: Session) -> None:
    # SQLAlchemy fires after_commit when a SAVEPOINT is released too (``try_insert`` uses
    # one): only the outermost commit makes the rows visible to the jobs that read them.
    if session.in_nested_transaction():
        return
    effects = list(session.info.pop(_PENDING, {}))
    if not effects:
        return
    dispatcher = current_dispatcher()
    if dispatcher is None:
        log.warning("no dispatcher: %d effect(s) dropped; the sweep will repair", len(effects))
        return
    try:
        dispatcher.dispatch(effects)
    except Exception:
        # The commit stands. Everything an effect does is re-derived from the database by
        # the periodic sweep (queued messages, open openings, due offers), so log and go on.
        log.exception("dispatching %d effect(s) failed; the sweep will repair", len(effects))


@event.listens_for(RecoverySession, "after_soft_rollback")
def _drop_after_rollback(session: Session, previous_transaction) -> None:
    # A savepoint's rollback keeps them: jobs re-read state, so an extra one is harmless.
    if not previous_transaction.nested:
        session.info.pop(_PENDING, None)
