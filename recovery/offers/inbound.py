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
from functools import cache

from sqlalchemy import String, and_, bindparam, or_, select, update
from sqlalchemy import text as sql_text
from sqlalchemy.orm import Session, contains_eager

from recovery.db import UTCDateTime
from recovery.messaging import texts
from recovery.messaging.outbox import Purpose, default_sender, record_reply
from recovery.messaging.phones import InvalidPhone, normalize_phone
from recovery.models import (
    Customer,
    Direction,
    Message,
    MessageStatus,
    OfferStatus,
    Shop,
    SlotOffer,
)
from recovery.offers.accepting import AcceptOutcome, accept_offer
from recovery.offers.locks import slot_lock
from recovery.offers.offering import decline_offer

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

    Shops may share a sender number, so one phone can be a customer of several shops
    behind the ``To`` number. A YES or NO acts on the one live offer of that phone on that
    number (the database allows at most one), and the text in and its answer are filed
    under that offer's shop and customer, never another shop's.
    """
    inbound_id = _record_once(session, sms, now)
    if inbound_id is None:  # this MessageSid was handled already
        log.info("duplicate delivery of %s ignored", sms.sid)
        return Reply(None, duplicate=True)

    phone = _phone_of(sms)
    customers, offer = _senders(session, phone, sms.to_number, shop_id)
    if not customers:
        return _answer(session, inbound_id, None, sms, texts.unknown_number(), now)
    # The shop a text is about: the one whose offer is live on this number, if any.
    primary = offer.customer if offer is not None else customers[0]

    keyword = classify(sms.body)
    if keyword is Keyword.STOP:
        text = _opt_out(session, customers, offer, primary, now)
        return _answer(session, inbound_id, primary, sms, text, now)
    if keyword is Keyword.START:
        for customer in customers:
            customer.opted_out_at = None
            customer.sms_opt_in = True
        return _answer(session, inbound_id, primary, sms, texts.opted_in(primary.shop), now)
    if keyword is Keyword.HELP:
        return _answer(session, inbound_id, primary, sms, texts.help_text(primary.shop), now)

    who = primary
    if keyword is Keyword.YES:
        # No live offer: the latest one on this number says why (expired, taken, ...).
        target = offer or _latest_offer_of(session, phone, sms.to_number, customers)
        text = _yes(session, target, now)
        who = target.customer if target is not None else primary
    elif keyword is Keyword.NO:
        text = (
            texts.declined()
            if offer and decline_offer(session, offer.id, now)
            else (texts.no_offer())
        )
    else:
        text = texts.short_help()
    return _answer(session, inbound_id, who, sms, text, now)


# The webhook's statements are built once, with bind parameters (``_RECORD_ONCE``,
# ``_FILE_INBOUND``, ``_senders_statement``): building a SQLAlchemy statement for every
# text cost more CPU than running its cached compiled form.

# ``uq_messages_provider_sid`` makes each delivery take effect once: a duplicate (or a
# concurrent twin, once the first commits) inserts nothing and returns no id. One
# statement, where a savepoint around an insert that may fail took three round trips and
# an ORM flush. Plain SQL because SQLAlchemy 2.0 compiles its ``ON CONFLICT`` constructs
# anew on every run (they are not cacheable): that alone cost 0.2 ms of CPU a text.
# PostgreSQL and SQLite (3.35+) both read it. The shop and customer are filed by
# ``_answer``, once known.
_RECORD_ONCE = sql_text(
    "INSERT INTO messages (direction, from_number, to_number, body, purpose, provider_sid,"
    " status, segments, cost_estimate_minor, send_attempts, created_at)"
    " VALUES (:direction, :from_number, :to_number, :body, :purpose, :provider_sid,"
    " :status, :segments, :cost_estimate_minor, :send_attempts, :created_at)"
    " ON CONFLICT (provider_sid) DO NOTHING RETURNING id"
).bindparams(bindparam("created_at", type_=UTCDateTime))
# What the ORM would fill in from the model's defaults (the model stays where they are).
_MESSAGE_DEFAULTS = {
    name: Message.__table__.c[name].default.arg
    for name in ("segments", "cost_estimate_minor", "send_attempts")
}


def _record_once(session: Session, sms: InboundSms, now: datetime) -> int | None:
    """Record the text in: its id, or None when its MessageSid is on record already."""
    return session.scalar(
        _RECORD_ONCE,
        {
            **_MESSAGE_DEFAULTS,
            "direction": Direction.INBOUND.value,
            "from_number": sms.from_number[:32],
            "to_number": sms.to_number[:32],
            "body": sms.body,
            "purpose": Purpose.INBOUND.value,
            "provider_sid": sms.sid[:64],
            "status": MessageStatus.RECEIVED.value,
            "created_at": now,
        },
    )


_FILE_INBOUND = (
    update(Message.__table__)
    .where(Message.__table__.c.id == bindparam("inbound_id"))
    .values(shop_id=bindparam("shop_id"), customer_id=bindparam("customer_id"))
)


def _answer(
    session: Session,
    inbound_id: int,
    customer: Customer | None,
    sms: InboundSms,
    text: str,
    now: datetime,
) -> Reply:
    """File the text in and the answer under the same shop and customer (None: unknown)."""
    shop = customer.shop if customer is not None else None
    if customer is not None:  # an unknown sender's text stays without shop and customer
        session.execute(
            _FILE_INBOUND,
            {"inbound_id": inbound_id, "shop_id": shop.id, "customer_id": customer.id},
        )
    record_reply(
        session, shop, customer, to=sms.from_number, from_=sms.to_number, body=text, now=now
    )
    return Reply(text)


def _phone_of(sms: InboundSms) -> str | None:
    try:
        return normalize_phone(sms.from_number)
    except InvalidPhone:
        return None


def _on_number(phone, sender):
    """Offers texted to ``phone`` from ``sender``: the ones a reply to that number answers."""
    return and_(SlotOffer.phone == phone, SlotOffer.sender_number == sender)


def _reaches(to_number):
    """Shops that text from ``to_number``: their own number, or (no number of their own)
    the deployment's default sender, ``bindparam("default_sender")``."""
    return or_(
        Shop.sms_from_number == to_number,
        and_(
            Shop.sms_from_number.is_(None),
            bindparam("default_sender", type_=String) == to_number,
        ),
    )


@cache
def _senders_statement(one_shop: bool):
    """The sender as a customer of each shop behind the number, with their shop, and the
    live offer on that phone and number next to the customer who holds it."""
    to = bindparam("to", type_=String)
    phone = bindparam("phone", type_=String)
    live_offer = and_(
        SlotOffer.customer_id == Customer.id,
        _on_number(phone, to),
        SlotOffer.status == OfferStatus.SENT,
    )
    statement = (
        select(Customer, SlotOffer)
        .join(Customer.shop)
        .outerjoin(SlotOffer, live_offer)
        .options(contains_eager(Customer.shop))
        .where(Customer.phone == phone, _reaches(to))
        .order_by(Customer.id)
    )
    if one_shop:
        statement = statement.where(Customer.shop_id == bindparam("shop_id"))
    return statement


def _senders(
    session: Session, phone: str | None, to_number: str, shop_id: int | None = None
) -> tuple[list[Customer], SlotOffer | None]:
    """The sender as a customer of each shop that texts from the number they wrote to
    (only of shop ``shop_id`` when given), and the live offer a reply to that number
    answers. One statement.

    At most one live offer: the partial unique index ``uq_slot_offers_live_per_phone_sender``
    allows one per phone and sender number. Shops and offers are loaded with the
    customers, so what follows (texts, accepting, declining) finds them in the session.
    """
    if phone is None:
        return [], None
    rows = session.execute(
        _senders_statement(shop_id is not None),
        {"phone": phone, "to": to_number, "default_sender": default_sender(), "shop_id": shop_id},
    ).all()
    customers = [customer for customer, _ in rows]
    offer = next((offer for _, offer in rows if offer is not None), None)
    return customers, offer


def _latest_offer_of(
    session: Session, phone: str, sender: str, customers: list[Customer]
) -> SlotOffer | None:
    """The latest offer on this number to one of ``customers`` (the phone's customers at
    the shops behind that number, or at the one shop asked for)."""
    return session.scalar(
        select(SlotOffer)
        .where(_on_number(phone, sender), SlotOffer.customer_id.in_([c.id for c in customers]))
        .order_by(SlotOffer.sent_at.desc(), SlotOffer.id.desc())
        .limit(1)
    )


def _yes(session: Session, target: SlotOffer | None, now: datetime) -> str:
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


def _opt_out(
    session: Session,
    customers: list[Customer],
    offer: SlotOffer | None,
    primary: Customer,
    now: datetime,
) -> str:
    """STOP is the carrier's: the number opts out at every shop behind the number it
    wrote to, not only at the shop whose offer is live."""
    for customer in customers:
        customer.opted_out_at = now
        customer.sms_opt_in = False
    session.flush()
    # Declined after the opt-out, so the next offer of that opening skips them.
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
    return texts.opted_out(primary.shop)
