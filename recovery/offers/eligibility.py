"""Who is offered an opening next: one SQL query, deterministic order.

Eligible: a customer of the same shop who opted in, has a textable E.164 number, has not
opted out, has no active booking overlapping the slot, was offered nothing within the
shop's cooldown, holds no live offer elsewhere (nor, on a sender number shared between
shops, at another shop), was never offered this opening, is not the customer who
cancelled it, and (if the shop asks) has a prior settled booking.
Order: most recent settled booking first, then customer id (stable).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import and_, exists, nulls_last, select
from sqlalchemy.orm import Session
from sqlalchemy.sql import Select

from recovery.messaging.outbox import sender_number
from recovery.models import (
    ACTIVE_APPOINTMENT_STATUSES,
    Appointment,
    Customer,
    OfferStatus,
    SlotOffer,
    SlotOpening,
)

E164 = r"^\+[1-9][0-9]{7,14}$"


def eligible_customers_query(opening: SlotOpening, now: datetime) -> Select:
    shop = opening.shop
    overlapping_booking = exists().where(
        Appointment.customer_id == Customer.id,
        Appointment.status.in_(ACTIVE_APPOINTMENT_STATUSES),
        Appointment.starts_at < opening.ends_at,
        Appointment.ends_at > opening.starts_at,
    )
    offered_recently_or_live_or_this_opening = exists().where(
        SlotOffer.customer_id == Customer.id,
        (SlotOffer.sent_at > now - timedelta(hours=shop.cooldown_hours))
        | (SlotOffer.status == OfferStatus.SENT)
        | (SlotOffer.slot_opening_id == opening.id),
    )
    # Shops may share a sender number: a phone with a live offer on this number (from any
    # shop) must not get a second one, or its YES would be ambiguous.
    live_on_this_number = exists().where(
        SlotOffer.phone == Customer.phone,
        SlotOffer.sender_number == sender_number(shop),
        SlotOffer.status == OfferStatus.SENT,
    )
    cancelled_it = select(Appointment.customer_id).where(
        Appointment.id == opening.source_appointment_id
    )
    conditions = [
        Customer.shop_id == opening.shop_id,
        Customer.sms_opt_in.is_(True),
        Customer.opted_out_at.is_(None),
        Customer.phone.regexp_match(E164),
        Customer.id.not_in(cancelled_it.scalar_subquery()),
        ~overlapping_booking,
        ~offered_recently_or_live_or_this_opening,
        ~live_on_this_number,
    ]
    if shop.require_prior_settled_booking:
        conditions.append(Customer.last_settled_at.is_not(None))
    return (
        select(Customer)
        .where(and_(*conditions))
        .order_by(nulls_last(Customer.last_settled_at.desc()), Customer.id)
    )


def next_eligible_customer(session: Session, opening: SlotOpening, now: datetime):
    return session.scalar(eligible_customers_query(opening, now).limit(1))
