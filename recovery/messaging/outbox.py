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
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import select
from sqlalchemy.orm import Session

from recovery import effects
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


def queue_sms(
    session: Session,
    shop: Shop,
    customer: Customer,
    body: str,
    purpose: Purpose,
    offer: SlotOffer | None = None,
    appointment: Appointment | None = None,
) -> Message:
    """Put a text in the outbox; the send job delivers it after the commit."""
    message = _outbound(
        shop,
        customer.phone,
        body,
        purpose,
        customer_id=customer.id,
        slot_offer_id=offer.id if offer else None,
        appointment_id=appointment.id if appointment else None,
    )
    if customer.opted_out_at is not None:
        message.status = MessageStatus.SUPPRESSED
        message.error = "customer opted out"
    session.add(message)
    session.flush()
    if message.status == MessageStatus.QUEUED:
        effects.request(session, EffectKind.SEND_MESSAGE, message.id)
    return message


def record_reply(
    session: Session,
    shop: Shop | None,
    customer: Customer | None,
    to: str,
    from_: str,
    body: str,
    now: datetime,
) -> Message:
    """Log the answer the webhook returns in TwiML (Twilio sends it; we only record it)."""
    message = Message(
        shop_id=shop.id if shop else None,
        customer_id=customer.id if customer else None,
        direction=Direction.OUTBOUND,
        from_number=from_,
        to_number=to,
        body=body,
        purpose=Purpose.REPLY,
        status=MessageStatus.SENT,
        segments=segments(body),
        cost_estimate_minor=estimated_cost_minor(body, shop.currency if shop else "USD"),
        sent_at=now,
    )
    session.add(message)
    return message


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


@dataclass(frozen=True)
class Claim:
    message_id: int
    attempt: int  # the message's send_attempts after this claim
    look_up_first: bool  # an earlier attempt may have reached the provider


def claim(session: Session, message_id: int, now: datetime) -> Claim | None:
    """Take a queued or sending message for one send attempt (``sending``); the caller
    commits before calling the provider, so the attempt is on record whatever happens.

    None when there is nothing to send, or another attempt holds the row right now
    (``SKIP LOCKED``): that one is calling the provider.
    """
    message = session.scalar(
        select(Message)
        .where(
            Message.id == message_id,
            Message.status.in_((MessageStatus.QUEUED, MessageStatus.SENDING)),
        )
        .with_for_update(skip_locked=True)
    )
    if message is None:
        return None
    look_up_first = message.status == MessageStatus.SENDING
    message.status = MessageStatus.SENDING
    message.send_attempts += 1
    if message.sending_at is None:
        message.sending_at = now
    session.flush()
    return Claim(message.id, message.send_attempts, look_up_first)


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


def _found(session: Session, message: Message, sender: SmsSender) -> SentSms | None:
    """The provider's copy of this message, if an earlier attempt was accepted: same
    sender, recipient and body, created since the first claim, and not already the
    record of another of our messages."""
    since = message.sending_at - LOOKUP_SKEW
    for candidate in sender.find(message.to_number, message.from_number, message.body, since):
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
    """Send one claimed message through the provider, once.

    ``claimed`` is the claim the caller committed; without one, the message is claimed
    here, in this transaction (the sandbox, tests and the demo, where nothing runs
    alongside). The row stays locked (``FOR UPDATE SKIP LOCKED``) during the provider
    call, so another attempt skips it. A clear provider refusal for now puts the message
    back in the queue; an unclear one leaves it ``sending``; both raise
    ``TemporarySendError`` for the retry, and the caller commits what they recorded.
    """
    if claimed is None:
        claimed = claim(session, message_id, now)
        if claimed is None:
            return Delivery.NOTHING
    message = session.scalar(
        select(Message)
        .where(Message.id == message_id, Message.status == MessageStatus.SENDING)
        .with_for_update(skip_locked=True)
    )
    if message is None or message.send_attempts != claimed.attempt:
        return Delivery.NOTHING  # sent meanwhile, or a later claim has it
    if claimed.look_up_first:
        found = _found(session, message, sender)
        if found is not None:
            _accepted(message, found, now)
            log.info("message %s was accepted by an earlier attempt", message.id)
            return Delivery.FOUND
    held_back = _held_back(session, message)
    if held_back is not None:
        message.status, message.error = held_back
        return Delivery(held_back[0].value)
    try:
        sent = sender.send(message.to_number, message.from_number, message.body)
    except PermanentSendError as exc:
        message.status = MessageStatus.FAILED
        message.error = str(exc)[:255]
        log.warning("message %s refused by provider: %s", message.id, exc)
        return Delivery.FAILED
    except UncertainSendError as exc:
        message.error = f"unclear, to be looked up: {exc}"[:255]
        raise
    except TemporarySendError as exc:
        message.status = MessageStatus.QUEUED  # not taken: the retry simply sends it
        message.error = str(exc)[:255]
        raise
    _accepted(message, sent, now)
    return Delivery.SENT
