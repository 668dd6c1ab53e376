"""The reminder text before a booking's start: scheduled for its exact time, exactly once.

``schedule_reminder`` asks for the job when a booking becomes ``booked`` (or moves);
``send_reminder`` is the job and re-checks everything, so an early, late, repeated or
stale run is harmless; ``due_reminders`` feeds the sweep, the safety net for lost jobs.
A ``Reminder`` row per (booking, start time) is the database's guarantee of once: a
second run, or the sweep racing the job, fails to insert it and sends nothing.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from recovery import effects
from recovery.db import try_insert
from recovery.effects import EffectKind
from recovery.links import manage_url
from recovery.messaging import texts
from recovery.messaging.outbox import Purpose, queue_sms
from recovery.messaging.quiet_hours import quiet_until
from recovery.models import Appointment, AppointmentStatus, Reminder, Shop


def reminders_on(shop: Shop) -> bool:
    return bool(shop.send_reminders) and shop.reminder_hours > 0


def reminder_time(appointment: Appointment) -> datetime:
    """When the reminder falls due, before quiet hours are taken into account."""
    return appointment.starts_at - timedelta(hours=appointment.shop.reminder_hours)


def booked_before_reminder_time(created_at: datetime, starts_at: datetime, hours: int) -> bool:
    """Only a booking made before its reminder time is reminded: one made at or after it
    has just had its confirmation, which says everything a reminder would."""
    return created_at < starts_at - timedelta(hours=hours)


def _wanted(appointment: Appointment, now: datetime) -> bool:
    """Whether this booking, as it stands, gets a reminder at all."""
    shop = appointment.shop
    if appointment.status != AppointmentStatus.BOOKED or not reminders_on(shop):
        return False
    # A booking made in this very transaction has no created_at until the flush.
    created_at = appointment.created_at or now
    return booked_before_reminder_time(created_at, appointment.starts_at, shop.reminder_hours)


def _send_at(appointment: Appointment, due: datetime) -> datetime | None:
    """``due`` moved past quiet hours; None when that leaves no time before the start."""
    at = quiet_until(appointment.shop, due) or due
    return at if at < appointment.starts_at else None


def schedule_reminder(session: Session, appointment: Appointment, now: datetime) -> None:
    """Ask for the reminder job at the reminder time (call again after a move: a run at
    the old time finds the booking not due and asks again, and the ``Reminder`` row keeps
    it to one text)."""
    if not _wanted(appointment, now):
        return
    at = _send_at(appointment, max(reminder_time(appointment), now))
    if at is None:
        return
    effects.request(session, EffectKind.SEND_REMINDER, appointment.id, at=at)


def send_reminder(session: Session, appointment_id: int, now: datetime) -> str:
    """The job: queue the reminder text if it is due and not yet sent for this start."""
    # Locked, so a cancellation or move in flight finishes first and we see its result.
    appointment = session.scalar(
        select(Appointment).where(Appointment.id == appointment_id).with_for_update()
    )
    if appointment is None:
        return "no such booking"
    if not _wanted(appointment, now):
        return "no reminder wanted"
    if now >= appointment.starts_at:
        return "already started"
    due = reminder_time(appointment)
    at = _send_at(appointment, max(due, now))
    if at is None:
        return "quiet hours until the start"
    if at > now:
        # Early (the booking moved later) or inside quiet hours: run again at the time.
        effects.request(session, EffectKind.SEND_REMINDER, appointment.id, at=at)
        return "not due yet"
    reminder = try_insert(
        session, Reminder(appointment_id=appointment.id, starts_at=appointment.starts_at)
    )
    if reminder is None:
        return "already sent"
    shop = appointment.shop
    body = texts.reminder(shop, appointment.starts_at, now, manage_url(appointment))
    message = queue_sms(
        session, shop, appointment.customer, body, Purpose.REMINDER, appointment=appointment
    )
    reminder.message_id = message.id
    session.flush()
    return "sent"


def due_reminders(session: Session, now: datetime, limit: int) -> list[int]:
    """Booked appointments whose reminder is due now and not yet sent for their current
    start. Shops in quiet hours are left out: their reminders wait for the end anyway.
    One query per distinct reminder time of the shops (not per shop)."""
    shops = session.scalars(
        select(Shop).where(Shop.send_reminders.is_(True), Shop.reminder_hours > 0)
    ).all()
    by_hours: dict[int, list[int]] = {}
    for shop in shops:
        if quiet_until(shop, now) is None:
            by_hours.setdefault(shop.reminder_hours, []).append(shop.id)
    found: list[int] = []
    for hours, shop_ids in sorted(by_hours.items()):
        rows = session.execute(
            select(Appointment.id, Appointment.starts_at, Appointment.created_at)
            .where(
                Appointment.shop_id.in_(shop_ids),
                Appointment.status == AppointmentStatus.BOOKED,
                Appointment.starts_at > now,
                Appointment.starts_at <= now + timedelta(hours=hours),
                ~exists().where(
                    Reminder.appointment_id == Appointment.id,
                    Reminder.starts_at == Appointment.starts_at,
                ),
            )
            .order_by(Appointment.starts_at)
            .limit(limit)
        ).all()
        # Compared here, not in SQL, because SQLite has no interval arithmetic.
        found += [
            id_
            for id_, starts_at, created_at in rows
            if booked_before_reminder_time(created_at, starts_at, hours)
        ]
        if len(found) >= limit:
            break
    return found[:limit]
