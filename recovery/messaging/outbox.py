"""Outbound SMS: written to the outbox in the domain transaction, sent by a job after commit.

Invariant 5 lives here: a number that opted out gets nothing but the opt-out confirmation
(which is the webhook's reply), checked both when a message is queued and when it is sent.

Never twice to the customer: the send job first *claims* a message (``claim``: ``queued``
-> ``sending``, committed before the provider is called), then ``deliver`` calls the
provider. A message found ``sending`` by a claim may have been accepted by an earlier
attempt (a timeout, a crash): ``deliver`` then looks it up at the provider and sends it
again only when the provider does not have it.
"""

from __future__ import annotations

import enum
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import exists, func, insert, literal, select, update
from sqlalchemy.orm import Session, aliased, joinedload

from recovery import effects
from recovery.db import UTCDateTime
from recovery.effects import EffectKind
from recovery.messaging.gateway import (
    PermanentSendError,
    SentSms,
    SmsSender,
    TemporarySendError,
    UncertainSendError,
    default_from_number,
    estimated_cost_minor,
)
from recovery.messaging.gsm import segments
from recovery.models import (
    Appointment,
    Customer,
    Direction,
    Message,
    MessageStatus,
    OfferStatus,
    OpeningStatus,
    Shop,
    SlotOffer,
)

log = logging.getLogger(__name__)


class Purpose(enum.StrEnum):
    """Why a text was sent; ``PurposeGroup`` sums them for the shop's SMS costs."""

    OFFER = "offer"
    ACCEPTED = "accepted"
    BOOKED = "booked"  # a booking is confirmed (with its manage link)
    PAYMENT_REQUEST = "payment_request"  # a new booking's pay link
    REMINDER = "reminder"
    CHANGED = "changed"  # staff moved the booking
    CANCELLED = "cancelled"  # staff cancelled the booking
    WITHDRAWN = "withdrawn"  # an offered slot is no longer available
    RELEASED = "released"
    REFUNDED = "refunded"
    REPLY = "reply"  # the webhook's TwiML answer
    INBOUND = "inbound"


class PurposeGroup(enum.StrEnum):
    OFFER = "offer"
    CONFIRMATION = "confirmation"
    REMINDER = "reminder"
    PAYMENT_REQUEST = "payment request"
    OTHER = "other"


PURPOSE_GROUPS: dict[PurposeGroup, tuple[Purpose, ...]] = {
    PurposeGroup.OFFER: (Purpose.OFFER,),
    PurposeGroup.CONFIRMATION: (Purpose.BOOKED,),
    PurposeGroup.REMINDER: (Purpose.REMINDER,),
    PurposeGroup.PAYMENT_REQUEST: (Purpose.PAYMENT_REQUEST,),
}


def purpose_group(purpose: str) -> PurposeGroup:
    for group, purposes in PURPOSE_GROUPS.items():
        if purpose in purposes:
            return group
    return PurposeGroup.OTHER


def default_sender() -> str:
    """The deployment's number, for shops without one of their own."""
    return default_from_number(current_app)


def sender_number(shop: Shop) -> str:
    return shop.sms_from_number or default_sender()


def _outbound(shop: Shop, to: str, body: str, purpose: Purpose, **kw) -> Message:
    return Message(
        shop_id=shop.id,
        direction=Direction.OUTBOUND,
        from_number=sender_number(shop),
        to_number=to,
        body=body,
        purpose=purpose,
        segments=segments(body),
        cost_estimate_minor=estimated_cost_minor(body, shop.currency),
        **kw,
    )


@dataclass(frozen=True)
class Outgoing:
    """A text to queue (``queue_many``)."""

    shop: Shop
    customer: Customer
    body: str
    purpose: Purpose
    offer_id: int | None = None
    appointment_id: int | None = None
    # Sent no sooner than this after ``now`` (None: at once), to leave its sender's next
    # turn to a text that cannot wait (``pace.next_turn_left``).
    not_before: datetime | None = None


def queue_many(session: Session, outgoing: list[Outgoing]) -> list[Message]:
    """Put texts in the outbox, one flush for all; the send jobs deliver them after the
    commit (or at ``not_before``). A customer who opted out gets nothing: their text is
    kept as suppressed."""
    messages = []
    for text in outgoing:
        message = _outbound(
            text.shop,
            text.customer.phone,
            text.body,
            text.purpose,
            customer_id=text.customer.id,
            slot_offer_id=text.offer_id,
            appointment_id=text.appointment_id,
        )
        if text.customer.opted_out_at is not None:
            message.status = MessageStatus.SUPPRESSED
            message.error = "customer opted out"
        messages.append(message)
    session.add_all(messages)
    session.flush()
    for message, text in zip(messages, outgoing, strict=True):
        if message.status == MessageStatus.QUEUED:
            effects.request(session, EffectKind.SEND_MESSAGE, message.id, at=text.not_before)
    return messages


def queue_sms(
    session: Session,
    shop: Shop,
    customer: Customer,
    body: str,
    purpose: Purpose,
    offer: SlotOffer | None = None,
    appointment: Appointment | None = None,
    not_before: datetime | None = None,
) -> Message:
    """Put one text in the outbox (``queue_many``)."""
    text = Outgoing(
        shop,
        customer,
        body,
        purpose,
        offer_id=offer.id if offer else None,
        appointment_id=appointment.id if appointment else None,
        not_before=not_before,
    )
    return queue_many(session, [text])[0]


def record_reply(
    session: Session,
    shop: Shop | None,
    customer: Customer | None,
    to: str,
    from_: str,
    body: str,
    now: datetime,
) -> None:
    """Log the answer the webhook returns in TwiML (Twilio sends it; we only record it).
    One Core ``INSERT``: every inbound text writes one, and nothing reads it back."""
    session.execute(
        insert(Message.__table__),
        {
            "shop_id": shop.id if shop else None,
            "customer_id": customer.id if customer else None,
            "direction": Direction.OUTBOUND.value,
            "from_number": from_,
            "to_number": to,
            "body": body,
            "purpose": Purpose.REPLY.value,
            "status": MessageStatus.SENT.value,
            "segments": segments(body),
            "cost_estimate_minor": estimated_cost_minor(body, shop.currency if shop else "USD"),
            "sent_at": now,
        },
    )


class Delivery(enum.StrEnum):
    """What a send attempt came to."""

    SENT = "sent"  # the provider accepted it now
    FOUND = "found at the provider"  # an earlier, unclear attempt had been accepted
    NOTHING = "nothing to send"  # done already, or another attempt holds it
    SUPPRESSED = "suppressed"
    CANCELLED = "cancelled"
    FAILED = "failed"


ACCEPTED = (Delivery.SENT, Delivery.FOUND)

# Our clock and the provider's may differ: a lookup reaches this far before the first claim.
LOOKUP_SKEW = timedelta(minutes=2)


class EarlierTextUnsent(TemporarySendError):
    """A text of the same conversation (sender and phone) written earlier is not sent
    yet: this one waits for it (nothing was claimed)."""


@dataclass(frozen=True)
class Claim:
    message_id: int
    attempt: int  # the message's send_attempts after this claim
    look_up_first: bool  # an earlier attempt may have reached the provider


def claim(session: Session, message_id: int, now: datetime) -> Claim | None:
    """Take a queued or sending message for one send attempt (``claim_many`` of one).

    None when there is nothing to send, or another attempt holds the row right now;
    ``EarlierTextUnsent`` when an earlier text of its conversation is not sent yet.
    """
    claims, waiting = claim_many(session, [message_id], now)
    if waiting:
        raise EarlierTextUnsent("an earlier text to this phone is not sent yet")
    return claims[0] if claims else None


# A text older than this is not waited for: the sweep gives up asking for it.
GIVE_UP_AFTER = timedelta(hours=6)
_UNSENT = (MessageStatus.QUEUED, MessageStatus.SENDING)


def claim_many(
    session: Session, message_ids: list[int], now: datetime
) -> tuple[list[Claim], list[int]]:
    """Take queued or sending messages for one send attempt each (``sending``), in three
    statements whatever their number; the caller commits before calling the provider, so
    every attempt is on record whatever happens. Returns the claims, and the ids left
    waiting for an earlier text of their conversation (the customer reads a conversation
    in order). A message with nothing to send, or held by another attempt right now
    (``SKIP LOCKED``: that one is calling the provider), is in neither.

    Callers pass at most one message per conversation. The claim is one bulk ``UPDATE``:
    a message already loaded in the session keeps its old status until it is reloaded
    (``deliver_many`` reloads them).
    """
    rows = session.execute(
        select(Message.id, Message.status)
        .where(Message.id.in_(message_ids), Message.status.in_(_UNSENT))
        .order_by(Message.id)
        .with_for_update(skip_locked=True)
    ).all()
    if not rows:
        return [], []
    waiting = set(_earlier_unsent(session, [message_id for message_id, _ in rows], now))
    was_sending = {message_id: status == MessageStatus.SENDING for message_id, status in rows}
    taken = [message_id for message_id, _ in rows if message_id not in waiting]
    attempts = {}
    if taken:
        attempts = dict(
            session.execute(
                update(Message)
                .where(Message.id.in_(taken))
                .values(
                    status=MessageStatus.SENDING,
                    send_attempts=Message.send_attempts + 1,
                    sending_at=func.coalesce(Message.sending_at, literal(now, UTCDateTime)),
                )
                .returning(Message.id, Message.send_attempts)
                .execution_options(synchronize_session=False)
            ).all()
        )
    claims = [Claim(i, attempts[i], was_sending[i]) for i in taken]
    return claims, sorted(waiting)


def _earlier_unsent(session: Session, message_ids: list[int], now: datetime) -> list[int]:
    """Those of ``message_ids`` with an earlier text of the same conversation (phone and
    sender) still to be sent (on ``ix_messages_unsent_conversation``)."""
    earlier = aliased(Message)
    return session.scalars(
        select(Message.id).where(
            Message.id.in_(message_ids),
            exists().where(
                earlier.to_number == Message.to_number,
                earlier.from_number == Message.from_number,
                earlier.id < Message.id,
                earlier.status.in_(_UNSENT),
                earlier.direction == Direction.OUTBOUND,
                earlier.created_at > now - GIVE_UP_AFTER,
            ),
        )
    ).all()


def _held_back(session: Session, message: Message) -> tuple[MessageStatus, str] | None:
    """Why a claimed text must not go out now, if it must not."""
    customer = session.get(Customer, message.customer_id) if message.customer_id else None
    if customer is not None and customer.opted_out_at is not None:
        return MessageStatus.SUPPRESSED, "customer opted out before sending"
    if message.purpose == Purpose.OFFER and message.slot_offer_id is not None:
        # An offer text is true only while its offer is live: one that expired, was
        # declined or withdrawn, or whose slot was taken, must not reach the customer.
        offer = session.get(SlotOffer, message.slot_offer_id)
        if offer.status != OfferStatus.SENT:
            return MessageStatus.CANCELLED, f"offer {offer.status} before its text went out"
        if offer.opening.status != OpeningStatus.OPEN:
            return MessageStatus.CANCELLED, f"opening {offer.opening.status} before its text"
    return None


def _unclaimed(session: Session, candidates: list[SentSms]) -> SentSms | None:
    """The first of the provider's ``candidates`` that is not already the record of
    another of our messages."""
    for candidate in candidates:
        taken = session.scalar(select(Message.id).where(Message.provider_sid == candidate.sid))
        if taken is None:
            return candidate
    return None


def _accepted(message: Message, sent: SentSms, now: datetime) -> None:
    message.provider_sid = sent.sid
    message.status = MessageStatus.SENT
    message.sent_at = sent.accepted_at or now
    message.error = None


def deliver(
    session: Session,
    message_id: int,
    sender: SmsSender,
    now: datetime,
    claimed: Claim | None = None,
) -> Delivery:
    """Send one claimed message through the provider, once (``deliver_many`` of one).

    ``claimed`` is the claim the caller committed; without one, the message is claimed
    here, in this transaction (the sandbox, tests and the demo, where nothing runs
    alongside). A clear provider refusal for now puts the message back in the queue; an
    unclear one leaves it ``sending``; both raise ``TemporarySendError`` for the retry,
    and the caller commits what they recorded.
    """
    if claimed is None:
        claimed = claim(session, message_id, now)
        if claimed is None:
            return Delivery.NOTHING
    outcome = deliver_many(session, [claimed], sender, now)[message_id]
    if isinstance(outcome, TemporarySendError):
        raise outcome
    return outcome


def deliver_many(
    session: Session,
    claims: list[Claim],
    sender: SmsSender,
    now: datetime,
    concurrency: int = 1,
) -> dict[int, Delivery | TemporarySendError]:
    """Send claimed messages through the provider, each once, ``concurrency`` calls at a
    time; the outcome of each, or the ``TemporarySendError`` that stopped it (already
    recorded on the row: the caller commits, then retries later).

    The rows stay locked (``FOR UPDATE SKIP LOCKED``) through the provider calls, so
    another attempt skips them; the calls run in threads that touch no database. A text
    claimed after an unclear attempt is first looked up at the provider; only those it
    does not have are sent. Callers claim at most one text per conversation at a time.
    """
    by_id = {c.message_id: c for c in claims}
    messages = session.scalars(
        select(Message)
        .where(Message.id.in_(by_id), Message.status == MessageStatus.SENDING)
        .order_by(Message.id)
        .with_for_update(skip_locked=True)
        .execution_options(populate_existing=True)  # the claim was a bulk UPDATE
    ).all()
    outcomes: dict[int, Delivery | TemporarySendError] = dict.fromkeys(by_id, Delivery.NOTHING)
    # Sent meanwhile, or a later claim has it: nothing to do.
    messages = [m for m in messages if m.send_attempts == by_id[m.id].attempt]
    loaded = _load_for_checks(session, messages)  # noqa: F841 (held: the session's map is weak)

    # Looked up first: an earlier, unclear attempt may have been accepted.
    lookups = [m for m in messages if by_id[m.id].look_up_first]
    for message, answer in _calls(lookups, lambda m: sender.find(
        m.to_number, m.from_number, m.body, m.sending_at - LOOKUP_SKEW), concurrency):  # fmt: skip
        if isinstance(answer, TemporarySendError):
            # The provider could not be asked: it may still have the text, so it stays
            # ``sending`` and the retry asks again.
            message.error = f"lookup failed: {answer}"[:255]
            outcomes[message.id] = answer
            continue
        found = _unclaimed(session, answer)
        if found is not None:
            _accepted(message, found, now)
            log.info("message %s was accepted by an earlier attempt", message.id)
            outcomes[message.id] = Delivery.FOUND
    to_send = []
    for message in messages:
        if outcomes[message.id] is not Delivery.NOTHING:
            continue
        held_back = _held_back(session, message)
        if held_back is not None:
            message.status, message.error = held_back
            outcomes[message.id] = Delivery(held_back[0].value)
        else:
            to_send.append(message)

    for message, answer in _calls(
        to_send, lambda m: sender.send(m.to_number, m.from_number, m.body), concurrency
    ):
        if isinstance(answer, PermanentSendError):
            message.status = MessageStatus.FAILED
            message.error = str(answer)[:255]
            log.warning("message %s refused by provider: %s", message.id, answer)
            outcomes[message.id] = Delivery.FAILED
        elif isinstance(answer, TemporarySendError):
            outcomes[message.id] = _refused_for_now(message, answer)
        else:
            _accepted(message, answer, now)
            outcomes[message.id] = Delivery.SENT
    return outcomes


def _refused_for_now(message: Message, exc: TemporarySendError) -> TemporarySendError:
    if isinstance(exc, UncertainSendError):
        message.error = f"unclear, to be looked up: {exc}"[:255]  # it stays ``sending``
    else:
        message.status = MessageStatus.QUEUED  # not taken: the retry simply sends it
        message.error = str(exc)[:255]
    return exc


def _load_for_checks(session: Session, messages: list[Message]) -> list:
    """Customers and offers (with their openings) of ``messages`` in two queries, so the
    checks before sending (``_held_back``) find them in the session. The caller keeps
    the returned rows while it checks: the session only holds rows weakly."""
    customer_ids = {m.customer_id for m in messages if m.customer_id}
    offer_ids = {m.slot_offer_id for m in messages if m.slot_offer_id}
    loaded: list = []
    if customer_ids:
        loaded += session.scalars(select(Customer).where(Customer.id.in_(customer_ids))).all()
    if offer_ids:
        loaded += session.scalars(
            select(SlotOffer)
            .where(SlotOffer.id.in_(offer_ids))
            .options(joinedload(SlotOffer.opening))
        ).all()
    return loaded


def _calls(messages: list[Message], call, concurrency: int):
    """``(message, answer)`` for each message: what ``call(message)`` returned, or the
    send error it raised. In threads when there are several; ``call`` must not touch the
    database (the session is this thread's)."""
    if not messages:
        return []

    def answer(message: Message):
        try:
            return call(message)
        except (TemporarySendError, PermanentSendError) as exc:
            return exc

    if concurrency <= 1 or len(messages) == 1:
        return [(m, answer(m)) for m in messages]
    with ThreadPoolExecutor(min(concurrency, len(messages)), thread_name_prefix="sms") as pool:
        return list(zip(messages, pool.map(answer, messages), strict=True))
