"""Slot openings: opened from a cancelled paid booking, reopened, expired.

At most one live (``open``/``filled``) opening per resource and start
(``uq_slot_openings_live_resource_start``), and one per cancelled booking (the unique
``source_appointment_id``): retries and double clicks reuse the first.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from recovery.db import try_insert, utcnow
from recovery.errors import InvalidTransition
from recovery.models import (
    ACTIVE_APPOINTMENT_STATUSES,
    Appointment,
    OfferStatus,
    OpeningStatus,
    SlotOffer,
    SlotOpening,
)
from recovery.offers.locks import lock_opening

log = logging.getLogger(__name__)


def live_offer(session: Session, opening_id: int) -> SlotOffer | None:
    return session.scalar(
        select(SlotOffer).where(
            SlotOffer.slot_opening_id == opening_id, SlotOffer.status == OfferStatus.SENT
        )
    )


def _holding(opening_ids) -> list:
    """An active booking made from one of these openings: a YES already won it."""
    return [
        Appointment.source_slot_opening_id.in_(opening_ids),
        Appointment.status.in_(ACTIVE_APPOINTMENT_STATUSES),
    ]


def held_booking(session: Session, opening_id: int) -> Appointment | None:
    """The active booking made from this opening, if a YES already won it."""
    return session.scalar(select(Appointment).where(*_holding([opening_id])))


def held_openings(session: Session, opening_ids: list[int]) -> set[int]:
    """Those of ``opening_ids`` that a YES already won (``held_booking`` for many)."""
    if not opening_ids:
        return set()
    return set(
        session.scalars(select(Appointment.source_slot_opening_id).where(*_holding(opening_ids)))
    )


def mark_expired(opening: SlotOpening, note: str, now: datetime) -> None:
    opening.status = OpeningStatus.EXPIRED
    opening.expired_at = now
    opening.outcome_note = note
    log.info("opening %s expired: %s", opening.id, note)


def reopen(opening: SlotOpening, note: str) -> None:
    """A filled opening goes back on offer (its booking was released or cancelled)."""
    opening.status = OpeningStatus.OPEN
    opening.filled_at = None
    opening.outcome_note = note


def open_slot(session: Session, appt: Appointment, now: datetime) -> SlotOpening:
    """The opening for a cancelled booking's time: a new one, the booking's own source
    opening reopened, or the live one that already covers that resource and start."""
    if appt.source_slot_opening_id:
        # A recovered booking cancelled later: its opening (filled) goes back on offer.
        opening = lock_opening(session, appt.source_slot_opening_id)
        if opening is not None and opening.status == OpeningStatus.FILLED:
            reopen(opening, f"reopened: recovered booking #{appt.id} was cancelled")
            return opening
    opening = try_insert(
        session,
        SlotOpening(
            shop_id=appt.shop_id,
            resource_id=appt.resource_id,
            service_id=appt.service_id,
            source_appointment_id=appt.id,
            starts_at=appt.starts_at,
            ends_at=appt.ends_at,
            status=OpeningStatus.OPEN,
            created_at=now,
        ),
    )
    if opening is None:
        # Another live opening already covers this resource and start: reuse it.
        existing = session.scalar(
            select(SlotOpening).where(
                SlotOpening.resource_id == appt.resource_id,
                SlotOpening.starts_at == appt.starts_at,
                SlotOpening.status.in_((OpeningStatus.OPEN, OpeningStatus.FILLED)),
            )
        )
        if existing is None:
            raise InvalidTransition(f"could not open a slot for booking #{appt.id}")
        return existing
    return opening


def expire_opening(session: Session, opening_id: int, note: str, now: datetime | None = None):
    """Staff ended recovery for this opening: expire it and its live offer."""
    now = now or utcnow()
    opening = lock_opening(session, opening_id)
    if opening is None or opening.status != OpeningStatus.OPEN:
        return False
    offer = live_offer(session, opening.id)
    if offer is not None:
        offer.status = OfferStatus.EXPIRED
    mark_expired(opening, note, now)
    session.flush()
    return True
