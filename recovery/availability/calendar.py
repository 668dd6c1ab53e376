"""What a shop's calendar holds between two instants: bookings, slot openings, busy blocks.

One query per kind of item, each bounded by the shop and the time range (never one query
per row), so a week of a busy shop costs four round trips whatever its size. Rows come back
as plain tuples, not ORM objects: the calendar only reads them, and a week can hold
thousands. Cancelled bookings are left out: their time is free again, or an opening.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from recovery.models import (
    Appointment,
    AppointmentStatus,
    BusyBlock,
    Customer,
    OfferStatus,
    Resource,
    Service,
    SlotOffer,
    SlotOpening,
)


@dataclass(frozen=True, slots=True)
class ResourceRow:
    id: int
    name: str
    active: bool


@dataclass(frozen=True, slots=True)
class BookingItem:
    id: int
    resource_id: int
    starts_at: datetime
    ends_at: datetime
    status: str
    customer: str
    service: str


@dataclass(frozen=True, slots=True)
class OpeningItem:
    id: int
    resource_id: int
    starts_at: datetime
    ends_at: datetime
    status: str
    service: str
    outcome_note: str | None
    # The live offer, if one is out: who has it and until when.
    offered_to: str | None
    offer_expires_at: datetime | None


@dataclass(frozen=True, slots=True)
class BlockItem:
    id: int
    resource_id: int | None  # None: the whole shop
    starts_at: datetime
    ends_at: datetime
    source: str
    reason: str


@dataclass(frozen=True)
class CalendarItems:
    bookings: list[BookingItem]
    openings: list[OpeningItem]
    blocks: list[BlockItem]


def shop_resources(session: Session, shop_id: int) -> list[ResourceRow]:
    """Every resource of the shop, in the order staff added them."""
    rows = session.execute(
        select(Resource.id, Resource.name, Resource.active)
        .where(Resource.shop_id == shop_id)
        .order_by(Resource.id)
    )
    return [ResourceRow(*row) for row in rows]


def items_between(
    session: Session,
    shop_id: int,
    starts: datetime,
    ends: datetime,
    resource_id: int | None = None,
) -> CalendarItems:
    """Everything of ``shop_id`` that overlaps ``[starts, ends)``, earliest first.

    With ``resource_id``, only that resource's items, plus the blocks that close the whole
    shop (they apply to every resource).
    """

    def overlapping(model):
        conditions = [model.shop_id == shop_id, model.starts_at < ends, model.ends_at > starts]
        if resource_id is not None and model is not BusyBlock:
            conditions.append(model.resource_id == resource_id)
        return conditions

    bookings = session.execute(
        select(
            Appointment.id,
            Appointment.resource_id,
            Appointment.starts_at,
            Appointment.ends_at,
            Appointment.status,
            Customer.name,
            Service.name,
        )
        .join(Customer, Appointment.customer_id == Customer.id)
        .join(Service, Appointment.service_id == Service.id)
        .where(*overlapping(Appointment), Appointment.status != AppointmentStatus.CANCELLED)
        .order_by(Appointment.starts_at, Appointment.id)
    )

    # At most one offer per opening is live (a partial unique index), so the outer join
    # never repeats an opening.
    live_offer = and_(
        SlotOffer.slot_opening_id == SlotOpening.id, SlotOffer.status == OfferStatus.SENT
    )
    openings = session.execute(
        select(
            SlotOpening.id,
            SlotOpening.resource_id,
            SlotOpening.starts_at,
            SlotOpening.ends_at,
            SlotOpening.status,
            Service.name,
            SlotOpening.outcome_note,
            Customer.name,
            SlotOffer.expires_at,
        )
        .join(Service, SlotOpening.service_id == Service.id)
        .outerjoin(SlotOffer, live_offer)
        .outerjoin(Customer, SlotOffer.customer_id == Customer.id)
        .where(*overlapping(SlotOpening))
        .order_by(SlotOpening.starts_at, SlotOpening.id)
    )

    block_query = select(
        BusyBlock.id,
        BusyBlock.resource_id,
        BusyBlock.starts_at,
        BusyBlock.ends_at,
        BusyBlock.source,
        BusyBlock.reason,
    ).where(*overlapping(BusyBlock))
    if resource_id is not None:
        block_query = block_query.where(
            or_(BusyBlock.resource_id == resource_id, BusyBlock.resource_id.is_(None))
        )
    blocks = session.execute(block_query.order_by(BusyBlock.starts_at, BusyBlock.id))

    return CalendarItems(
        bookings=[BookingItem(*row) for row in bookings],
        openings=[OpeningItem(*row) for row in openings],
        blocks=[BlockItem(*row) for row in blocks],
    )
