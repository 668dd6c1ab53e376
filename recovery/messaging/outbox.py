"""Outbound SMS: written to the outbox in the domain transaction, sent by a job after commit.

Invariant 5 lives here: a number that opted out gets nothing but the opt-out confirmation
(which is the webhook's reply), checked both when a message is queued and when it is sent.
"""

from __future__ import annotations

import enum
import logging
from datetime import datetime

from flask import current_app
from sqlalchemy import select
from sqlalchemy.orm import Session

from recovery import effects
from recovery.effects import EffectKind
from recovery.messaging.gateway import (
    PermanentSendError,
    SmsSender,
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


def deliver(session: Session, message_id: int, sender: SmsSender, now: datetime) -> str:
    """Send one queued message through the provider, once.

    The row stays locked (``FOR UPDATE SKIP LOCKED``) during the provider call, so a second
    job for the same message skips it, and only a committed ``sent`` ends the work. A crash
    between the provider's acceptance and our commit is the one window for a repeat.
    """
    message = session.scalar(
        select(Message)
        .where(Message.id == message_id, Message.status == MessageStatus.QUEUED)
        .with_for_update(skip_locked=True)
    )
    if message is None:
        return "nothing to send"
    customer = session.get(Customer, message.customer_id) if message.customer_id else None
    if customer is not None and customer.opted_out_at is not None:
        message.status = MessageStatus.SUPPRESSED
        message.error = "customer opted out before sending"
        return "suppressed"
    try:
        sent = sender.send(message.to_number, message.from_number, message.body)
    except PermanentSendError as exc:
        message.status = MessageStatus.FAILED
        message.error = str(exc)[:255]
        log.warning("message %s refused by provider: %s", message.id, exc)
        return "failed"
    message.provider_sid = sent.sid
    message.status = MessageStatus.SENT
    message.sent_at = now
    return "sent"
