"""Sending texts in batches: several in flight per worker, each sender at its rate, each
text once, each conversation in order.

A send job carries up to ``SEND_BATCH`` message ids. Texts whose sender's slot
(``recovery.messaging.pace``) is not due yet get a job at their slot, so a worker is never
tied up waiting for a busy number. The rest are claimed (one per conversation: a later
text of the same sender and phone waits for the earlier one, so a customer reads them in
the order they were written), then sent ``SEND_CONCURRENCY`` at a time
(``outbox.deliver_many``), then recorded: one protocol for one text or fifty, so a crash
anywhere leaves at most texts marked ``sending``, which the next attempt looks up at the
provider before sending again.
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import timedelta

from flask import current_app
from sqlalchemy import select

from recovery import effects
from recovery.db import db, utcnow
from recovery.effects import EffectKind
from recovery.messaging import outbox
from recovery.messaging.gateway import TemporarySendError, sender_for
from recovery.messaging.pace import MAX_TURN_WAIT_MS, NotYourTurn, PacedSender, pace_for
from recovery.models import Message, MessageStatus
from recovery.offers import offering

log = logging.getLogger(__name__)

SEND_BATCH = 50  # texts per send job
# A slot this close is waited for in the job (the turn check sleeps); a later one gets
# its own job at the slot.
WAIT_IN_JOB = timedelta(milliseconds=MAX_TURN_WAIT_MS)
DEFERRED = "deferred to its turn"
# A text waiting for an earlier one of its conversation is asked for again this soon.
CONVERSATION_RECHECK_SECONDS = 1.0


def send_batch(message_ids: tuple[int, ...]) -> str:
    """Send the texts of one job, each never twice (``messaging.outbox``): the claims are
    committed before the provider is called, so a retry after a timeout or a crash looks
    a text up first; what the provider said is committed before anything else. An
    accepted offer text starts its offer's time to answer.

    One text: its outcome, or the ``TemporarySendError`` that stopped it. Several: a
    count of outcomes, and a ``TemporarySendError`` after the rest are done if any could
    not go for now (the job's retry finds the sent ones done)."""
    rows = db.session.execute(
        select(Message.id, Message.from_number, Message.to_number)
        .where(
            Message.id.in_(message_ids),
            Message.status.in_((MessageStatus.QUEUED, MessageStatus.SENDING)),
        )
        .order_by(Message.id)
    ).all()
    due, deferred = _due_now(rows)
    # One text per conversation at a time: the next goes once this one is sent.
    firsts: dict[tuple[str, str], int] = {}
    for message_id, from_number, to_number in due:
        firsts.setdefault((from_number, to_number), message_id)
    later = [row[0] for row in due if row[0] not in firsts.values()]

    # Those waiting for an earlier text of their conversation are asked for again in a
    # moment, after that one.
    claims, waiting = outbox.claim_many(db.session, list(firsts.values()), utcnow())
    db.session.commit()

    outcomes: dict = dict.fromkeys(deferred + waiting, DEFERRED)
    if claims:
        outcomes.update(
            outbox.deliver_many(
                db.session, claims, _sender(), utcnow(), current_app.config["SEND_CONCURRENCY"]
            )
        )
        db.session.commit()  # the provider's answers are on record before anything else
    _start_answer_windows([i for i, o in outcomes.items() if o in outbox.ACCEPTED])
    # Texts whose number had sent too recently: back in the set of the second of its turn.
    turns = {i: o.wait for i, o in outcomes.items() if isinstance(o, NotYourTurn)}
    turns.update(dict.fromkeys(waiting, CONVERSATION_RECHECK_SECONDS))
    if turns:
        _wait_for_seconds(turns)
        outcomes.update(dict.fromkeys(turns, DEFERRED))
    for message_id in later:
        effects.request(db.session, EffectKind.SEND_MESSAGE, message_id)
    db.session.commit()
    return _result(message_ids, outcomes)


def _sender():
    sender = sender_for(current_app)
    pace = pace_for(current_app)
    return sender if pace is None else PacedSender(sender, pace)


def _start_answer_windows(accepted: list[int]) -> None:
    if not accepted:
        return
    offers = db.session.scalars(
        select(Message.slot_offer_id).where(
            Message.id.in_(accepted),
            Message.purpose == outbox.Purpose.OFFER,
            Message.slot_offer_id.is_not(None),
        )
    ).all()
    offering.start_answer_windows(db.session, list(offers))


def _result(message_ids, outcomes: dict) -> str:
    """One text: its outcome, or the error that stopped it. Several: a count of outcomes,
    raising after all are recorded if any could not go for now."""
    if len(message_ids) == 1:
        outcome = outcomes.get(message_ids[0], outbox.Delivery.NOTHING)
        if isinstance(outcome, TemporarySendError):
            raise outcome
        return str(outcome)
    failures = [o for o in outcomes.values() if isinstance(o, TemporarySendError)]
    counts = Counter(str(o) for o in outcomes.values() if not isinstance(o, Exception))
    summary = ", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items()))
    if failures:
        raise TemporarySendError(f"{len(failures)} not sent for now ({failures[0]}); {summary}")
    return summary or outbox.Delivery.NOTHING


def _due_now(rows: list) -> tuple[list, list[int]]:
    """The texts whose sender's slot is due now (or within ``WAIT_IN_JOB``), and the ids
    of the others, which are asked for again at their slots."""
    pace = pace_for(current_app)
    if pace is None or not rows:
        return rows, []
    slots = pace.plan([(message_id, from_number) for message_id, from_number, _ in rows])
    later = {i: wait for i, wait in slots.items() if timedelta(seconds=wait) > WAIT_IN_JOB}
    if later:
        _wait_for_seconds(later)
    return [row for row in rows if row[0] not in later], list(later)


def _wait_for_seconds(waits: dict[int, float]) -> None:
    """Ask for each text (id: seconds from now) again when its turn comes (committed
    here, whatever happens next); the dispatcher gathers the texts of each second into one
    job."""
    now = utcnow()
    for message_id, wait in waits.items():
        at = now + timedelta(seconds=wait)
        effects.request(db.session, EffectKind.SEND_MESSAGE, message_id, at=at)
    db.session.commit()
