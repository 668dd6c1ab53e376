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

from sqlalchemy import and_, exists, func, literal, nulls_last, or_, select
from sqlalchemy.orm import Session
from sqlalchemy.sql import Select

from recovery.messaging.outbox import default_sender, sender_number
from recovery.models import (
    ACTIVE_APPOINTMENT_STATUSES,
    Appointment,
    Customer,
    OfferStatus,
    Shop,
    SlotOffer,
    SlotOpening,
)

E164 = r"^\+[1-9][0-9]{7,14}$"


def _conditions(opening, shop: Shop | type[Shop], sender, offered_since) -> list:
    """Who may be offered ``opening``: the one statement of the rule.

    ``opening`` and ``shop`` are either rows (values: one opening, ``next_eligible_customer``)
    or the ``SlotOpening`` and ``Shop`` classes (columns: many openings in one statement,
    ``pick_next_customers``); ``sender`` likewise, and ``offered_since`` is the start of
    the shop's cooldown. Each subquery names the one table it reads (``correlate_except``):
    the opening, shop and customer come from the enclosing statements.
    """
    overlapping_booking = (
        exists()
        .where(
            Appointment.customer_id == Customer.id,
            Appointment.status.in_(ACTIVE_APPOINTMENT_STATUSES),
            Appointment.starts_at < opening.ends_at,
            Appointment.ends_at > opening.starts_at,
        )
        .correlate_except(Appointment)
    )
    offered_recently_or_live_or_this_opening = (
        exists()
        .where(
            SlotOffer.customer_id == Customer.id,
            (SlotOffer.sent_at > offered_since)
            | (SlotOffer.status == OfferStatus.SENT)
            | (SlotOffer.slot_opening_id == opening.id),
        )
        .correlate_except(SlotOffer)
    )
    # Shops may share a sender number: a phone with a live offer on this number (from any
    # shop) must not get a second one, or its YES would be ambiguous.
    live_on_this_number = (
        exists()
        .where(
            SlotOffer.phone == Customer.phone,
            SlotOffer.sender_number == sender,
            SlotOffer.status == OfferStatus.SENT,
        )
        .correlate_except(SlotOffer)
    )
    cancelled_it = (
        select(Appointment.customer_id)
        .where(Appointment.id == opening.source_appointment_id)
        .correlate_except(Appointment)
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
    if isinstance(shop, Shop):
        if shop.require_prior_settled_booking:
            conditions.append(Customer.last_settled_at.is_not(None))
    else:
        settled = Customer.last_settled_at.is_not(None)
        conditions.append(or_(shop.require_prior_settled_booking.is_(False), settled))
    return conditions


ORDER = (nulls_last(Customer.last_settled_at.desc()), Customer.id)


def eligible_customers_query(opening: SlotOpening, now: datetime) -> Select:
    shop = opening.shop
    since = now - timedelta(hours=shop.cooldown_hours)
    conditions = _conditions(opening, shop, sender_number(shop), since)
    return select(Customer).where(and_(*conditions)).order_by(*ORDER)


def next_eligible_customer(session: Session, opening: SlotOpening, now: datetime):
    return session.scalar(eligible_customers_query(opening, now).limit(1))


def pick_next_customers(
    session: Session, opening_ids: list[int], cooldown_hours: int, now: datetime
) -> dict[int, tuple[int, str] | None]:
    """The next eligible customer (id, phone) of each opening, in one statement; None
    for an opening nobody is left for.

    The openings must be of shops with this cooldown, and of different shops (each pick
    is made as if the others were not: two openings of one shop would pick the same
    customer).
    """
    sender = func.coalesce(Shop.sms_from_number, literal(default_sender()))
    since = now - timedelta(hours=cooldown_hours)
    pick = (
        select(Customer.id)
        .where(*_conditions(SlotOpening, Shop, sender, since))
        .order_by(*ORDER)
        .limit(1)
        .scalar_subquery()
    )
    rows = session.execute(
        select(SlotOpening.id, pick.label("customer_id"))
        .join(Shop, Shop.id == SlotOpening.shop_id)
        .where(SlotOpening.id.in_(opening_ids))
    ).all()
    picked = {customer_id for _, customer_id in rows if customer_id is not None}
    phones = dict(
        session.execute(select(Customer.id, Customer.phone).where(Customer.id.in_(picked))).all()
    )
    return {
        opening_id: (customer_id, phones[customer_id]) if customer_id is not None else None
        for opening_id, customer_id in rows
    }
