"""Making and moving a booking, under the shop's deposit rule ("no free bookings").

A new booking for a service with a deposit starts ``pending_payment``: the customer is
texted the pay link, and the booking is released if it is still unpaid after the shop's
``booking_hold_hours`` (never later than its start). A service with no deposit books at
once. Staff can instead take the deposit at the desk or waive it (``booking.holds``).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from recovery import effects
from recovery.availability.blocks import ensure_not_blocked
from recovery.availability.overlap import ensure_free
from recovery.booking.holds import mark_booked
from recovery.db import utcnow
from recovery.effects import EffectKind
from recovery.errors import InvalidTransition, NotFound
from recovery.links import manage_url, pay_url
from recovery.messaging import texts
from recovery.messaging.outbox import Purpose, queue_sms
from recovery.messaging.reminders import schedule_reminder
from recovery.models import Appointment, AppointmentStatus, Customer, Resource, Service
from recovery.offers.locks import lock_booking
from recovery.payments.requests import request_payment


def create_booking(
    session: Session,
    shop_id: int,
    customer_id: int,
    service_id: int,
    resource_id: int,
    starts_at: datetime,
    now: datetime | None = None,
) -> Appointment:
    """A new booking of the shop's customer, service and resource, under the deposit rule.

    Raises ``availability.overlap.SlotTaken`` when the resource is busy then (the
    exclusion constraint settles races on PostgreSQL), ``availability.blocks.TimeBlocked``
    when that time is blocked on the resource or for the whole shop, and ``NotFound`` for
    another shop's rows.
    """
    now = now or utcnow()
    customer = session.get(Customer, customer_id)
    service = session.get(Service, service_id)
    resource = session.get(Resource, resource_id)
    for row, name in ((customer, "customer"), (service, "service"), (resource, "resource")):
        if row is None or row.shop_id != shop_id:
            raise NotFound(f"no such {name} in this shop")
    ends_at = starts_at + timedelta(minutes=service.duration_minutes)
    ensure_free(session, resource.id, starts_at, ends_at)
    ensure_not_blocked(session, shop_id, resource.id, starts_at, ends_at)
    appt = Appointment(
        shop_id=shop_id,
        customer_id=customer.id,
        service_id=service.id,
        resource_id=resource.id,
        starts_at=starts_at,
        ends_at=ends_at,
        status=AppointmentStatus.PENDING_PAYMENT,
        created_at=now,
    )
    session.add(appt)
    session.flush()
    apply_deposit_rule(session, appt, now)
    return appt


def apply_deposit_rule(session: Session, appt: Appointment, now: datetime) -> None:
    """Ask a freshly made booking for its deposit, or book it at once when none is due.

    A booking entered for a time already past is a record of what happened: no deposit
    is asked for and no text is sent.
    """
    if appt.starts_at <= now:
        appt.status = AppointmentStatus.BOOKED
        session.flush()
        return
    shop = appt.shop
    due_at = min(now + timedelta(hours=shop.booking_hold_hours), appt.starts_at)
    payment = request_payment(session, appt, now, due_at=due_at)
    if payment is None:
        mark_booked(session, appt, now, paid=False)
        return
    appt.status = AppointmentStatus.PENDING_PAYMENT
    body = texts.payment_request(
        shop, appt.starts_at, now, payment.amount_minor, due_at, pay_url(payment)
    )
    queue_sms(session, shop, appt.customer, body, Purpose.PAYMENT_REQUEST, appointment=appt)
    effects.request(session, EffectKind.RELEASE_HOLD, appt.id, at=due_at)
    session.flush()


def move_booking(
    session: Session,
    appointment_id: int,
    starts_at: datetime,
    resource_id: int | None = None,
    now: datetime | None = None,
) -> Appointment:
    """Staff moved a booking: a new time (and resource), the customer told, the reminder
    scheduled for the new time (the old one is skipped: reminders are per start)."""
    now = now or utcnow()
    appt = lock_booking(session, appointment_id)
    if appt is None:
        raise NotFound(f"no appointment {appointment_id}")
    if not appt.is_active:
        raise InvalidTransition(f"only an active booking can be moved (this one is {appt.status})")
    resource_id = resource_id or appt.resource_id
    ends_at = starts_at + timedelta(minutes=appt.service.duration_minutes)
    if (starts_at, resource_id) == (appt.starts_at, appt.resource_id):
        return appt
    ensure_free(session, resource_id, starts_at, ends_at, ignore_id=appt.id)
    ensure_not_blocked(session, appt.shop_id, resource_id, starts_at, ends_at)
    time_changed = starts_at != appt.starts_at
    appt.starts_at, appt.ends_at, appt.resource_id = starts_at, ends_at, resource_id
    if appt.payment_due_at is not None and appt.payment_due_at > starts_at:
        appt.payment_due_at = max(now, starts_at)
        effects.request(session, EffectKind.RELEASE_HOLD, appt.id, at=appt.payment_due_at)
    session.flush()
    if time_changed and starts_at > now:
        body = texts.moved(appt.shop, starts_at, now, manage_url(appt))
        queue_sms(session, appt.shop, appt.customer, body, Purpose.CHANGED, appointment=appt)
        if appt.status == AppointmentStatus.BOOKED:
            schedule_reminder(session, appt, now)
    return appt
