"""Offering an opening to one customer at a time, and moving on.

An offer lives ``offer_ttl_minutes`` from the moment the provider accepts its text (not
from when it was queued: a slow queue must not eat the customer's time to answer); its
expiry runs as an exact-time job (the sweep is the safety net). While the text still
waits to be sent, the offer does not expire. An expired offer passes the opening to the
next eligible customer at once, a declined one in the job its commit asks for; nobody
left, or too close to the start, expires the opening.

Offers wait out the shop's quiet hours: the next offer is asked for at their end (an
exact-time job), unless that end leaves less than the shop's lead time before the start.

One code path whatever the number: ``offer_next_many`` offers on a batch of openings and
``expire_due_offers`` expires a batch of due offers (the sweep catching up after an
outage, in a fixed number of statements plus one per opening); the exact-time jobs call
the same functions with one.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session, aliased, joinedload

from recovery import effects
from recovery.availability.blocks import blocked_openings
from recovery.db import dialect_insert, utcnow
from recovery.effects import EffectKind
from recovery.messaging import texts
from recovery.messaging.outbox import Outgoing, Purpose, queue_many, sender_number
from recovery.messaging.quiet_hours import quiet_until
from recovery.models import (
    Customer,
    Message,
    MessageStatus,
    OfferStatus,
    OpeningStatus,
    Shop,
    SlotOffer,
    SlotOpening,
)
from recovery.offers.eligibility import pick_next_customers
from recovery.offers.locks import lock_opening, reload
from recovery.offers.openings import held_openings, live_offer, mark_expired

log = logging.getLogger(__name__)

# The note of an opening whose time staff blocked (``availability.blocks``).
BLOCKED_NOTE = "blocked"


class OfferOutcome(enum.StrEnum):
    OFFERED = "offered"
    NOT_OPEN = "opening is not open"
    ALREADY_LIVE = "an offer is already live"
    HELD = "held for a booking"
    EXPIRED = "opening expired"
    WAITING = "waiting for quiet hours to end"


def offer_next(session: Session, opening_id: int, now: datetime | None = None) -> OfferOutcome:
    """Offer the opening to the next eligible customer, or expire it if there is none."""
    now = now or utcnow()
    if lock_opening(session, opening_id) is None:
        return OfferOutcome.NOT_OPEN
    return offer_next_many(session, [opening_id], now)[opening_id]


def offer_next_many(
    session: Session, opening_ids: Sequence[int], now: datetime
) -> dict[int, OfferOutcome]:
    """``offer_next`` for many openings at once, whose rows the caller has locked.

    A fixed number of statements whatever the number of openings (their state, live
    offers, holds and blocks, the texts), plus two per round of at most one opening per
    shop that pick the next customers and insert their offers. This is the only way an
    opening is offered on: the exact-time jobs pass one opening, the sweep a batch.
    """
    openings = session.scalars(
        select(SlotOpening)
        .where(SlotOpening.id.in_(opening_ids))
        .options(joinedload(SlotOpening.shop), joinedload(SlotOpening.service))
        .order_by(SlotOpening.id)
        .execution_options(populate_existing=True)
    ).all()
    outcomes = {ident: OfferOutcome.NOT_OPEN for ident in opening_ids}
    ids = [o.id for o in openings if o.status == OpeningStatus.OPEN]
    live = set(
        session.scalars(
            select(SlotOffer.slot_opening_id).where(
                SlotOffer.slot_opening_id.in_(ids), SlotOffer.status == OfferStatus.SENT
            )
        )
    )
    held = held_openings(session, ids)
    blocked = blocked_openings(session, ids)
    ready = []
    for opening in openings:
        if opening.status != OpeningStatus.OPEN:
            continue
        outcome = _gate(session, opening, opening.id in live, opening.id in held,
                        opening.id in blocked, now)  # fmt: skip
        if outcome is None:
            ready.append(opening)
        else:
            outcomes[opening.id] = outcome
    offered, outcome_of = _offer_to_next_customers(session, ready, now)
    outcomes.update(outcome_of)
    _text_offers(session, offered, now)
    return outcomes


def _gate(
    session: Session,
    opening: SlotOpening,
    has_live_offer: bool,
    is_held: bool,
    is_blocked: bool,
    now: datetime,
) -> OfferOutcome | None:
    """Why the open ``opening`` is not offered to anyone now (None: offer it)."""
    if has_live_offer:
        return OfferOutcome.ALREADY_LIVE
    if is_held:
        return OfferOutcome.HELD
    # A block saved after the opening (or racing its creation): no one is offered a
    # time that cannot be booked.
    if is_blocked:
        mark_expired(opening, BLOCKED_NOTE, now)
        return OfferOutcome.EXPIRED
    lead = timedelta(minutes=opening.shop.min_lead_minutes)
    if opening.starts_at - now < lead:
        mark_expired(opening, "too close to the start to offer", now)
        return OfferOutcome.EXPIRED
    if not opening.shop.send_offers:
        mark_expired(opening, "recovery offers are switched off for this shop", now)
        return OfferOutcome.EXPIRED
    quiet_end = quiet_until(opening.shop, now)
    if quiet_end is not None:
        if opening.starts_at - quiet_end < lead:
            mark_expired(opening, "quiet hours end too close to the start to offer", now)
            return OfferOutcome.EXPIRED
        # Nothing written, so a repeat call (a retry, a stale job) only asks again for the
        # same run. The sweep leaves shops in quiet hours alone and catches it after.
        effects.request(session, EffectKind.OFFER_NEXT, opening.id, at=quiet_end)
        return OfferOutcome.WAITING
    return None


TRIES = 5  # picks refused because a concurrent opening just took that customer


def _offer_to_next_customers(
    session: Session, openings: list[SlotOpening], now: datetime
) -> tuple[list[tuple[SlotOpening, int]], dict[int, OfferOutcome]]:
    """Give each opening a live offer to its next eligible customer; returns the offers
    made (opening, offer id) and each opening's outcome.

    In rounds of at most one opening per shop (two of one shop would pick the same
    customer): one statement picks a customer for every opening of the round, one
    inserts their offers. A later round sees the earlier ones' offers, so a shop's second
    opening goes to its next customer. A pick a unique index refuses (a concurrent
    transaction gave that customer, or that phone on a shared number, a live offer) is
    picked again next round.
    """
    offered: list[tuple[SlotOpening, int]] = []
    outcomes: dict[int, OfferOutcome] = {}
    pending = {opening.id: opening for opening in openings}
    tries = dict.fromkeys(pending, 0)
    while pending:
        batch = _one_per_shop(list(pending.values()))
        cooldown = batch[0].shop.cooldown_hours
        picks = pick_next_customers(session, [o.id for o in batch], cooldown, now)
        wanted = []
        for opening in batch:
            if picks[opening.id] is None:
                mark_expired(opening, "no eligible customers left", now)
                outcomes[opening.id] = OfferOutcome.EXPIRED
                del pending[opening.id]
            else:
                wanted.append((opening, *picks[opening.id]))
        made = _insert_offers(session, wanted, now)
        for opening, _customer_id, _phone in wanted:
            tries[opening.id] += 1
            if opening.id in made:
                log.info("opening %s offered", opening.id)
                offered.append((opening, made[opening.id]))
                outcomes[opening.id] = OfferOutcome.OFFERED
            elif tries[opening.id] < TRIES:
                continue
            else:
                # Customers kept being taken by concurrent openings: try again shortly.
                at = now + timedelta(seconds=2)
                effects.request(session, EffectKind.OFFER_NEXT, opening.id, at=at)
                outcomes[opening.id] = OfferOutcome.ALREADY_LIVE
            del pending[opening.id]
    return offered, outcomes


def _one_per_shop(openings: list[SlotOpening]) -> list[SlotOpening]:
    """The next round: at most one opening per shop, all of shops with one cooldown (the
    pick's statement takes the cooldown as a value)."""
    cooldown = openings[0].shop.cooldown_hours
    shops: set[int] = set()
    batch = []
    for opening in openings:
        if opening.shop_id not in shops and opening.shop.cooldown_hours == cooldown:
            shops.add(opening.shop_id)
            batch.append(opening)
    return batch


def _insert_offers(
    session: Session, wanted: list[tuple[SlotOpening, int, str]], now: datetime
) -> dict[int, int]:
    """Insert the live offers (opening, customer id, phone), one statement; returns the
    offer id of each opening whose offer the unique indexes let in."""
    if not wanted:
        return {}
    rows = [
        {
            "slot_opening_id": opening.id,
            "customer_id": customer_id,
            "phone": phone,
            "sender_number": sender_number(opening.shop),
            "channel": "sms",
            "status": OfferStatus.SENT,
            "sent_at": now,
            "expires_at": now + _ttl(opening),
        }
        for opening, customer_id, phone in wanted
    ]
    statement = (
        dialect_insert(session, SlotOffer)
        .values(rows)
        .on_conflict_do_nothing()
        .returning(SlotOffer.slot_opening_id, SlotOffer.id)
    )
    return dict(session.execute(statement).all())


def _text_offers(session: Session, offered: list[tuple[SlotOpening, int]], now: datetime) -> None:
    """Queue the text of each new offer (one flush for all) and ask for its expiry."""
    if not offered:
        return
    rows = session.execute(
        select(SlotOffer.id, SlotOffer.expires_at, Customer)
        .join(Customer, Customer.id == SlotOffer.customer_id)
        .where(SlotOffer.id.in_([offer_id for _, offer_id in offered]))
    ).all()
    by_offer = {offer_id: (expires_at, customer) for offer_id, expires_at, customer in rows}
    texts_to_queue = []
    for opening, offer_id in offered:
        expires_at, customer = by_offer[offer_id]
        body = texts.offer(opening.shop, opening.service, opening.starts_at, now)
        texts_to_queue.append(Outgoing(opening.shop, customer, body, Purpose.OFFER, offer_id))
        effects.request(session, EffectKind.EXPIRE_OFFER, offer_id, at=expires_at)
    queue_many(session, texts_to_queue)


def _ttl(opening: SlotOpening) -> timedelta:
    return timedelta(minutes=opening.shop.offer_ttl_minutes)


# ---------------------------------------------------------------- expiry


@dataclass(frozen=True)
class _Due:
    """An offer whose expiry is being decided, with what decides it."""

    offer_id: int
    opening_id: int
    status: str
    expires_at: datetime
    text_status: str | None  # its latest offer text's, None when it has none
    text_sent_at: datetime | None
    ttl: timedelta
    lead: timedelta
    starts_at: datetime


def answer_deadline(due: _Due) -> datetime | None:
    """When the customer's time to answer ends: the offer's lifetime from the provider's
    acceptance of its text. None while the text still waits to be sent. An offer whose
    text never went out (suppressed, cancelled, refused) keeps the deadline it has."""
    if due.text_status is None:
        return due.expires_at
    if due.text_status in (MessageStatus.QUEUED, MessageStatus.SENDING):
        return None
    if due.text_sent_at is None:
        return due.expires_at
    return due.text_sent_at + due.ttl


def _due_query():
    text = aliased(Message)
    latest_text = (
        select(text.id)
        .where(text.slot_offer_id == SlotOffer.id, text.purpose == Purpose.OFFER)
        .order_by(text.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    return (
        select(
            SlotOffer.id,
            SlotOffer.slot_opening_id,
            SlotOffer.status,
            SlotOffer.expires_at,
            Message.status,
            Message.sent_at,
            Shop.offer_ttl_minutes,
            Shop.min_lead_minutes,
            SlotOpening.starts_at,
        )
        .join(SlotOpening, SlotOpening.id == SlotOffer.slot_opening_id)
        .join(Shop, Shop.id == SlotOpening.shop_id)
        .outerjoin(Message, Message.id == latest_text)
    )


def _as_due(row) -> _Due:
    offer_id, opening_id, status, expires_at, text_status, sent_at, ttl, lead, starts = row
    return _Due(offer_id, opening_id, status, expires_at, text_status, sent_at,
                timedelta(minutes=ttl), timedelta(minutes=lead), starts)  # fmt: skip


def _settle(session: Session, due: _Due, now: datetime, cut_short: bool = False) -> str | None:
    """Decide a live offer's expiry: None when its time is up (the caller expires it),
    else what was done instead (its deadline moved, its expiry job asked for again).

    The time is up only once the customer has had the offer's lifetime since its text
    was accepted (``answer_deadline``); while the text waits, the offer waits too, unless
    the slot is now too close to its start to offer. Staff cutting it short
    (``cut_short``) end it whatever its text."""
    expires_at = due.expires_at
    if not cut_short:
        deadline = answer_deadline(due)
        if deadline is None and due.starts_at - now >= due.lead:
            # Its text is not out yet: look again one lifetime on (or when it is accepted).
            expires_at = max(expires_at, now + due.ttl)
            _move_expiry(session, due, expires_at)
            return "waiting for its text to be sent"
        if deadline is not None:
            expires_at = deadline
    if expires_at > now:
        # Ran early (clock skew between machines): come back at the right time.
        _move_expiry(session, due, expires_at)
        return "not due yet"
    return None


def _move_expiry(session: Session, due: _Due, expires_at: datetime) -> None:
    _move_expiries(session, [(due, expires_at)])


def _move_expiries(session: Session, moves: list[tuple[_Due, datetime]]) -> None:
    """Each offer's deadline set (one bulk UPDATE by primary key for all that change) and
    its expiry job asked for at it."""
    changed = [{"id": due.offer_id, "expires_at": at} for due, at in moves if at != due.expires_at]
    if changed:
        session.execute(update(SlotOffer), changed)
    for due, expires_at in moves:
        effects.request(session, EffectKind.EXPIRE_OFFER, due.offer_id, at=expires_at)


def _expire(session: Session, offer_ids: list[int]) -> None:
    if offer_ids:
        session.execute(
            update(SlotOffer).where(SlotOffer.id.in_(offer_ids)).values(status=OfferStatus.EXPIRED)
        )


def start_answer_window(session: Session, offer_id: int) -> str:
    """The offer's text was accepted by the provider: its time to answer starts now, so
    its expiry (and the exact-time job, moved by its stable id) follows."""
    return start_answer_windows(session, [offer_id]).get(offer_id, "no such offer")


def start_answer_windows(session: Session, offer_ids: list[int]) -> dict[int, str]:
    """``start_answer_window`` for the offers of a batch of accepted texts: their openings
    locked in one statement (in id order, like every transition), then one query."""
    if not offer_ids:
        return {}
    opening_ids = select(SlotOffer.slot_opening_id).where(SlotOffer.id.in_(offer_ids))
    session.execute(
        select(SlotOpening.id)
        .where(SlotOpening.id.in_(opening_ids.scalar_subquery()))
        .order_by(SlotOpening.id)
        .with_for_update()
    ).all()
    results, moves = {}, []
    for due in map(_as_due, session.execute(_due_query().where(SlotOffer.id.in_(offer_ids)))):
        if due.status != OfferStatus.SENT:
            results[due.offer_id] = f"offer already {due.status}"
            continue
        deadline = answer_deadline(due)
        if deadline is None or deadline == due.expires_at:
            results[due.offer_id] = "unchanged"
            continue
        moves.append((due, deadline))
        results[due.offer_id] = f"expires at {deadline.isoformat()}"
    _move_expiries(session, moves)
    return results


def expire_offer(
    session: Session, offer_id: int, now: datetime | None = None, cut_short: bool = False
) -> str:
    """The offer's time is up: mark it expired and offer the next customer at once
    (``_settle`` says when its time is up)."""
    now = now or utcnow()
    offer = session.get(SlotOffer, offer_id)
    if offer is None:
        return "no such offer"
    lock_opening(session, offer.slot_opening_id)
    due = _as_due(session.execute(_due_query().where(SlotOffer.id == offer_id)).one())
    if due.status != OfferStatus.SENT:
        return f"offer already {due.status}"
    instead = _settle(session, due, now, cut_short)
    if instead is not None:
        return instead
    _expire(session, [offer_id])
    return f"expired; next: {offer_next_many(session, [due.opening_id], now)[due.opening_id]}"


def expire_due_offers(session: Session, now: datetime, limit: int) -> int:
    """The sweep's catch-up: up to ``limit`` due offers expired and their openings offered
    on, set-based. Their openings are locked with ``SKIP LOCKED``, so sweeps running in
    parallel take different batches. Returns how many due offers were looked at."""
    rows = session.execute(
        _due_query()
        .where(SlotOffer.status == OfferStatus.SENT, SlotOffer.expires_at <= now)
        .order_by(SlotOffer.expires_at)
        .limit(limit)
        .with_for_update(of=SlotOpening, skip_locked=True)
    ).all()
    expired = []
    for due in map(_as_due, rows):
        if _settle(session, due, now) is None:
            expired.append(due)
    _expire(session, [due.offer_id for due in expired])
    offer_next_many(session, [due.opening_id for due in expired], now)
    return len(rows)


def expire_offer_now(session: Session, offer_id: int, now: datetime | None = None) -> str:
    """Staff cut a live offer short: its deadline becomes now, then it expires like any
    other (``expire_offer`` refuses early runs, which protects offers from early jobs).
    The scheduled expiry job later finds it expired and does nothing."""
    now = now or utcnow()
    offer = session.get(SlotOffer, offer_id)
    if offer is None:
        return "no such offer"
    lock_opening(session, offer.slot_opening_id)
    offer = reload(session, SlotOffer, offer_id)
    if offer.status != OfferStatus.SENT:
        return f"offer already {offer.status}"
    offer.expires_at = min(offer.expires_at, now)
    session.flush()
    return expire_offer(session, offer.id, now, cut_short=True)


def retrigger(session: Session, opening_id: int, now: datetime | None = None) -> str:
    """Staff: offer the opening to the next customer now, cutting short any live offer."""
    offer = live_offer(session, opening_id)
    if offer is not None:
        return expire_offer_now(session, offer.id, now)
    return str(offer_next(session, opening_id, now))


def decline_offer(session: Session, offer_id: int, now: datetime | None = None) -> bool:
    """The customer said NO (or STOP): decline, and offer the next customer in a job
    right after the commit. The reply to the customer does not wait for the next offer
    (the webhook answers sooner), and the job is the same one a cancellation asks for;
    were it lost, the sweep finds the opening idle and offers it on."""
    now = now or utcnow()
    offer = session.get(SlotOffer, offer_id)
    if offer is None:
        return False
    opening = lock_opening(session, offer.slot_opening_id)
    offer = reload(session, SlotOffer, offer_id)
    if offer.status != OfferStatus.SENT:
        return False
    offer.status = OfferStatus.DECLINED
    offer.responded_at = now
    session.flush()
    effects.request(session, EffectKind.OFFER_NEXT, opening.id)
    return True
