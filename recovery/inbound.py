"""Inbound SMS: record it once, read the keyword, act, and say what to answer.

Keywords follow carrier rules for opt-out and help
(https://www.twilio.com/docs/messaging/tutorials/advanced-opt-out): STOP and its synonyms
opt the number out, START/UNSTOP opt it back in, HELP/INFO answers with who we are.
"""

from __future__ import annotations

import enum
import logging
import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, literal, or_, select
from sqlalchemy.orm import Session

from recovery import texts
from recovery.db import try_insert
from recovery.locks import slot_lock
from recovery.loop import AcceptOutcome, accept_offer, decline_offer
from recovery.messaging import Purpose, default_sender, record_reply
from recovery.models import (
    Customer,
    Direction,
    Message,
    MessageStatus,
    OfferStatus,
    Shop,
    SlotOffer,
)
from recovery.phones import InvalidPhone, normalize_phone

log = logging.getLogger(__name__)


class Keyword(enum.StrEnum):
    YES = "yes"
    NO = "no"
    STOP = "stop"
    START = "start"
    HELP = "help"
    OTHER = "other"


KEYWORDS: dict[Keyword, frozenset[str]] = {
    Keyword.YES: frozenset(
        {"yes", "y", "yes please", "yeah", "yea", "yep", "yup", "ok", "okay", "sure", "book"}
    ),
    Keyword.NO: frozenset({"no", "n", "no thanks", "nope", "pass"}),
    Keyword.STOP: frozenset(
        {"stop", "stopall", "unsubscribe", "cancel", "end", "quit", "revoke", "optout"}
    ),
    Keyword.START: frozenset({"start", "unstop", "subscribe"}),
    Keyword.HELP: frozenset({"help", "info"}),
}


def classify(body: str) -> Keyword:
    """Case, surrounding and repeated spaces, and trailing punctuation do not matter."""
    text = unicodedata.normalize("NFKC", body or "").casefold()
    text = re.sub(r"\s+", " ", text).strip()
    text = re.sub(r"[\s.!?,;:)(\-]+$", "", text)
    text = text.replace("opt out", "optout").replace("opt-out", "optout")
    for keyword, words in KEYWORDS.items():
        if text in words:
            return keyword
    return Keyword.OTHER


@dataclass(frozen=True)
class InboundSms:
    sid: str
    from_number: str
    to_number: str
    body: str


@dataclass(frozen=True)
class Reply:
    text: str | None  # None: a duplicate delivery, answered with an empty response
    duplicate: bool = False


def handle_inbound(
    session: Session, sms: InboundSms, now: datetime, *, shop_id: int | None = None
) -> Reply:
    """Everything an inbound SMS does. The caller commits, then answers with ``text``.

    ``shop_id`` restricts it to that shop's customers (the admin's simulated reply, which
    must not reach another shop's customers who share the sender number); Twilio's
    webhook leaves it None: the sender is whichever shops text from that number.
    """
    inbound = Message(
        direction=Direction.INBOUND,
        from_number=sms.from_number[:32],
        to_number=sms.to_number[:32],
        body=sms.body,
        purpose=Purpose.INBOUND,
        provider_sid=sms.sid[:64],
        status=MessageStatus.RECEIVED,
        created_at=now,
    )
    if try_insert(session, inbound) is None:  # this MessageSid was handled already
        log.info("duplicate delivery of %s ignored", sms.sid)
        return Reply(None, duplicate=True)

    customers = _customers_for(session, sms, shop_id)
    if not customers:
        return _answer(session, None, None, sms, texts.unknown_number(), now)
    primary = customers[0]
    inbound.shop_id, inbound.customer_id = primary.shop_id, primary.id

    keyword = classify(sms.body)
    if keyword is Keyword.STOP:
        return _answer(session, primary.shop, primary, sms, _opt_out(session, customers, now), now)
    if keyword is Keyword.START:
        for customer in customers:
            customer.opted_out_at = None
            customer.sms_opt_in = True
        return _answer(session, primary.shop, primary, sms, texts.opted_in(primary.shop), now)
    if keyword is Keyword.HELP:
        return _answer(session, primary.shop, primary, sms, texts.help_text(primary.shop), now)

    offer = _live_offer_of(session, customers)
    if keyword is Keyword.YES:
        text = _yes(session, customers, offer, now)
    elif keyword is Keyword.NO:
        text = (
            texts.declined()
            if offer and decline_offer(session, offer.id, now)
            else (texts.no_offer())
        )
    else:
        text = texts.short_help()
    who = offer.customer if offer else primary
    return _answer(session, who.shop, who, sms, text, now)


def _answer(
    session, shop: Shop | None, customer: Customer | None, sms: InboundSms, text: str, now: datetime
) -> Reply:
    record_reply(
        session, shop, customer, to=sms.from_number, from_=sms.to_number, body=text, now=now
    )
    session.flush()
    return Reply(text)


def _customers_for(session: Session, sms: InboundSms, shop_id: int | None = None) -> list[Customer]:
    """The sender as a customer of each shop that texts from the number they wrote to
    (only of shop ``shop_id`` when given)."""
    try:
        phone = normalize_phone(sms.from_number)
    except InvalidPhone:
        return []
    # Shops with their own number, or (no number of their own) the deployment's default.
    reached = select(Shop.id).where(
        or_(
            Shop.sms_from_number == sms.to_number,
            and_(Shop.sms_from_number.is_(None), literal(default_sender()) == sms.to_number),
        )
    )
    if shop_id is not None:
        reached = reached.where(Shop.id == shop_id)
    return list(
        session.scalars(
            select(Customer)
            .where(Customer.phone == phone, Customer.shop_id.in_(reached.scalar_subquery()))
            .order_by(Customer.id)
        )
    )


def _live_offer_of(session: Session, customers: list[Customer]) -> SlotOffer | None:
    return session.scalar(
        select(SlotOffer)
        .where(
            SlotOffer.customer_id.in_([c.id for c in customers]),
            SlotOffer.status == OfferStatus.SENT,
        )
        .order_by(SlotOffer.expires_at)
    )


def _latest_offer_of(session: Session, customers: list[Customer]) -> SlotOffer | None:
    return session.scalar(
        select(SlotOffer)
        .where(SlotOffer.customer_id.in_([c.id for c in customers]))
        .order_by(SlotOffer.sent_at.desc(), SlotOffer.id.desc())
    )


def _yes(
    session: Session, customers: list[Customer], offer: SlotOffer | None, now: datetime
) -> str:
    target = offer or _latest_offer_of(session, customers)
    if target is None:
        return texts.no_offer()
    with slot_lock(target.slot_opening_id):
        result = accept_offer(session, target.id, now)
    if result.outcome is AcceptOutcome.WON:
        return result.confirmation
    if result.outcome is AcceptOutcome.ALREADY_YOURS:
        return texts.already_yours()
    if result.outcome is AcceptOutcome.EXPIRED:
        return texts.expired()
    if result.outcome is AcceptOutcome.TAKEN:
        return texts.taken()
    return texts.no_offer()


def _opt_out(session: Session, customers: list[Customer], now: datetime) -> str:
    for customer in customers:
        customer.opted_out_at = now
        customer.sms_opt_in = False
    session.flush()
    offer = _live_offer_of(session, customers)
    if offer is not None:
        decline_offer(session, offer.id, now)
    # Anything still waiting in the outbox for them stays unsent.
    for message in session.scalars(
        select(Message).where(
            Message.customer_id.in_([c.id for c in customers]),
            Message.status == MessageStatus.QUEUED,
        )
    ):
        message.status = MessageStatus.SUPPRESSED
        message.error = "customer opted out"
    return texts.opted_out(customers[0].shop)
