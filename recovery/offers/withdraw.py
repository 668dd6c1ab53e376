"""A block saved over an open opening withdraws it: the slot no longer exists.

The live offer is closed, its customer is texted that the slot is gone, and the opening
expires with the note ``blocked``. Each opening is changed under its row lock, like every
other transition of the loop, so a YES racing the block either won before (and the block
was saved over a booking staff confirmed) or finds the offer closed.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from recovery.db import utcnow
from recovery.messaging import texts
from recovery.messaging.outbox import Purpose, queue_sms
from recovery.models import BusyBlock, OfferStatus, OpeningStatus, SlotOpening
from recovery.offers.locks import lock_opening
from recovery.offers.offering import BLOCKED_NOTE
from recovery.offers.openings import held_booking, live_offer, mark_expired

log = logging.getLogger(__name__)


def withdraw_blocked_openings(
    session: Session, block_id: int, now: datetime | None = None
) -> list[SlotOpening]:
    """Expire the shop's open openings in the block's time (on its resource, or on any
    for a shop-wide block); returns those withdrawn."""
    now = now or utcnow()
    block = session.get(BusyBlock, block_id)
    if block is None:
        return []
    query = select(SlotOpening.id).where(
        SlotOpening.shop_id == block.shop_id,
        SlotOpening.status == OpeningStatus.OPEN,
        SlotOpening.starts_at < block.ends_at,
        SlotOpening.ends_at > block.starts_at,
    )
    if block.resource_id is not None:
        query = query.where(SlotOpening.resource_id == block.resource_id)
    withdrawn: list[SlotOpening] = []
    for opening_id in session.scalars(query.order_by(SlotOpening.id)).all():
        opening = lock_opening(session, opening_id)
        if opening is None or opening.status != OpeningStatus.OPEN:
            continue  # moved on while we waited for its lock
        if held_booking(session, opening.id) is not None:
            # A YES already won it: that customer holds a booking (paying, or booked),
            # which staff saw among the block's clashing bookings and chose to keep.
            # Taking it back is a cancellation, which staff can do on the booking.
            continue
        offer = live_offer(session, opening.id)
        if offer is not None:
            offer.status = OfferStatus.EXPIRED
            body = texts.withdrawn(opening.shop, opening.starts_at, now)
            queue_sms(session, opening.shop, offer.customer, body, Purpose.WITHDRAWN, offer=offer)
        mark_expired(opening, BLOCKED_NOTE, now)
        withdrawn.append(opening)
    session.flush()
    if withdrawn:
        log.info("block %s withdrew openings %s", block.id, [o.id for o in withdrawn])
    return withdrawn
