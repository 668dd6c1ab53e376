"""Booking time on a resource: the overlap rule in code.

PostgreSQL enforces it with the ``ex_appointments_no_overlap`` exclusion constraint, which
also settles races. SQLite (the embedded demo) has no such constraint, so every booking
made by the domain checks here first; SQLite runs one writer at a time, so the check holds.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from recovery.models import ACTIVE_APPOINTMENT_STATUSES, Appointment


class SlotTaken(ValueError):
    """The resource already has an active booking overlapping that time."""


def overlapping(
    session: Session,
    resource_id: int,
    starts_at: datetime,
    ends_at: datetime,
    ignore_id: int | None = None,
) -> Appointment | None:
    query = select(Appointment).where(
        Appointment.resource_id == resource_id,
        Appointment.status.in_(ACTIVE_APPOINTMENT_STATUSES),
        Appointment.starts_at < ends_at,
        Appointment.ends_at > starts_at,
    )
    if ignore_id is not None:
        query = query.where(Appointment.id != ignore_id)
    return session.scalar(query.limit(1))


def ensure_free(
    session: Session,
    resource_id: int,
    starts_at: datetime,
    ends_at: datetime,
    ignore_id: int | None = None,
) -> None:
    clash = overlapping(session, resource_id, starts_at, ends_at, ignore_id)
    if clash is not None:
        raise SlotTaken(f"the resource is already booked then (booking #{clash.id})")
