"""Offering an opening to one customer at a time, and moving on.

An offer lives ``offer_ttl_minutes`` from the moment the provider accepts its text (not
from when it was queued: a slow queue must not eat the customer's time to answer); its
expiry runs as an exact-time job (the sweep is the safety net). While the text still
waits to be sent, the offer does not expire. An expired or declined offer passes the
opening to the next eligible customer at once; nobody left, or too close to the start,
expires the opening.

Offers wait out the shop's quiet hours: the next offer is asked for at their end (an
exact-time job), unless that end leaves less than the shop's lead time before the start.
"""

from __future__ import annotations

import enum
import logging
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from recovery import effects
from recovery.availability.blocks import blocking
from recovery.db import try_insert, utcnow
from recovery.effects import EffectKind
from recovery.messaging import texts
from recovery.messaging.outbox import Purpose, queue_sms, sender_number
from recovery.messaging.quiet_hours import quiet_until
from recovery.models import (
    Customer,
    Message,
    MessageStatus,
    OfferStatus,
    OpeningStatus,
    SlotOffer,
    SlotOpening,
)
from recovery.offers.eligibility import next_eligible_customer
from recovery.offers.locks import lock_opening, reload
from recovery.offers.openings import held_booking, live_offer, mark_expired

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
    opening = lock_opening(session, opening_id)
    if opening is None or opening.status != OpeningStatus.OPEN:
        return OfferOutcome.NOT_OPEN
    if live_offer(session, opening.id) is not None:
        return OfferOutcome.ALREADY_LIVE
    if held_booking(session, opening.id) is not None:
        return OfferOutcome.HELD
    # A block saved after the opening (or racing its creation): no one is offered a
    # time that cannot be booked. One query on the blocks' shop and range index.
    if blocking(session, opening.shop_id, opening.resource_id, opening.starts_at, opening.ends_at):
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

    for _ in range(5):
        customer = next_eligible_customer(session, opening, now)
        if customer is None:
            mark_expired(opening, "no eligible customers left", now)
            return OfferOutcome.EXPIRED
        offer = _create_offer(session, opening, customer, now)
        if offer is not None:
            body = texts.offer(opening.shop, opening.service, opening.starts_at, now)
            queue_sms(session, opening.shop, customer, body, Purpose.OFFER, offer=offer)
            effects.request(session, EffectKind.EXPIRE_OFFER, offer.id, at=offer.expires_at)
            log.info("opening %s offered to customer %s", opening.id, customer.id)
            return OfferOutcome.OFFERED
    # Five customers in a row were taken by concurrent openings: try again shortly.
    effects.request(session, EffectKind.OFFER_NEXT, opening.id, at=now + timedelta(seconds=2))
    return OfferOutcome.ALREADY_LIVE


def _create_offer(session: Session, opening: SlotOpening, customer: Customer, now: datetime):
    """Insert the live offer; None if a concurrent opening just gave this customer one."""
    return try_insert(
        session,
        SlotOffer(
            slot_opening_id=opening.id,
            customer_id=customer.id,
            phone=customer.phone,
            sender_number=sender_number(opening.shop),
            status=OfferStatus.SENT,
            sent_at=now,
            expires_at=now + timedelta(minutes=opening.shop.offer_ttl_minutes),
        ),
    )


def _ttl(opening: SlotOpening) -> timedelta:
    return timedelta(minutes=opening.shop.offer_ttl_minutes)


def _answer_deadline(session: Session, offer: SlotOffer) -> datetime | None:
    """When the customer's time to answer ends: the offer's lifetime from the provider's
    acceptance of its text. None while the text still waits to be sent. An offer whose
    text never went out (suppressed, cancelled, refused) keeps the deadline it has."""
    text = session.scalar(
        select(Message)
        .where(Message.slot_offer_id == offer.id, Message.purpose == Purpose.OFFER)
        .order_by(Message.id.desc())
        .limit(1)
    )
    if text is None:
        return offer.expires_at
    if text.status in (MessageStatus.QUEUED, MessageStatus.SENDING):
        return None
    if text.sent_at is None:
        return offer.expires_at
    return text.sent_at + _ttl(offer.opening)


def start_answer_window(session: Session, offer_id: int) -> str:
    """The offer's text was accepted by the provider: its time to answer starts now, so
    its expiry (and the exact-time job, moved by its stable id) follows."""
    offer = session.get(SlotOffer, offer_id)
    if offer is None:
        return "no such offer"
    lock_opening(session, offer.slot_opening_id)
    offer = reload(session, SlotOffer, offer_id)
    if offer.status != OfferStatus.SENT:
        return f"offer already {offer.status}"
    deadline = _answer_deadline(session, offer)
    if deadline is None or deadline == offer.expires_at:
        return "unchanged"
    offer.expires_at = deadline
    session.flush()
    effects.request(session, EffectKind.EXPIRE_OFFER, offer.id, at=deadline)
    return f"expires at {deadline.isoformat()}"


def expire_offer(
    session: Session, offer_id: int, now: datetime | None = None, cut_short: bool = False
) -> str:
    """The offer's time is up: mark it expired and offer the next customer at once.

    The time is up only once the customer has had the offer's lifetime since its text was
    accepted (``_answer_deadline``); while the text waits, the offer waits too, unless the
    slot is now too close to its start to offer. Staff cutting it short (``cut_short``)
    end it whatever its text."""
    now = now or utcnow()
    offer = session.get(SlotOffer, offer_id)
    if offer is None:
        return "no such offer"
    opening = lock_opening(session, offer.slot_opening_id)
    offer = reload(session, SlotOffer, offer_id)
    if offer.status != OfferStatus.SENT:
        return f"offer already {offer.status}"
    if not cut_short:
        deadline = _answer_deadline(session, offer)
        lead = timedelta(minutes=opening.shop.min_lead_minutes)
        if deadline is None and opening.starts_at - now >= lead:
            # Its text is not out yet: look again one lifetime on (or when it is accepted).
            offer.expires_at = max(offer.expires_at, now + _ttl(opening))
            effects.request(session, EffectKind.EXPIRE_OFFER, offer.id, at=offer.expires_at)
            return "waiting for its text to be sent"
        if deadline is not None:
            offer.expires_at = deadline
    if offer.expires_at > now:
        # Ran early (clock skew between machines): come back at the right time.
        effects.request(session, EffectKind.EXPIRE_OFFER, offer.id, at=offer.expires_at)
        return "not due yet"
    offer.status = OfferStatus.EXPIRED
    session.flush()
    return f"expired; next: {offer_next(session, opening.id, now)}"


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
    """The customer said NO (or STOP): decline and offer the next customer at once."""
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
    offer_next(session, opening.id, now)
    return True
