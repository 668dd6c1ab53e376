"""Factories that add rows to a session and flush (ids assigned, nothing committed)."""

from __future__ import annotations

import itertools
from datetime import datetime, time, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from recovery.db import utcnow
from recovery.messaging.outbox import sender_number
from recovery.models import (
    Appointment,
    AppointmentStatus,
    BusyBlock,
    CalendarConnection,
    Customer,
    DepositKind,
    Payment,
    PaymentStatus,
    Resource,
    Service,
    Shop,
    SlotOffer,
    SlotOpening,
    StaffUser,
)

_seq = itertools.count(1)


def _add(session: Session, obj):
    session.add(obj)
    session.flush()
    return obj


SHOP_NUMBER = "+447700900000"  # the first shop's own sender number


def _free_sender_number(session: Session, n: int) -> str:
    """``SHOP_NUMBER`` for the first shop, a number of its own for each further one: an own
    number belongs to one shop (``uq_shops_sms_from_number``)."""
    taken = session.scalar(select(Shop.id).where(Shop.sms_from_number == SHOP_NUMBER))
    return SHOP_NUMBER if taken is None else f"+4477007{n % 100_000:05d}"


def shop(session: Session, **kw) -> Shop:
    n = next(_seq)
    if "sms_from_number" not in kw:
        kw["sms_from_number"] = _free_sender_number(session, n)
    defaults = dict(
        name=f"Shop {n}",
        timezone="Europe/London",
        currency="GBP",
        locale="en_GB",
        contact_phone="+442071234567",
        # No quiet hours unless a test asks for them: the suite runs at any time of day,
        # and a test about the loop must not wait until 08:00 because CI ran at night.
        quiet_hours_start=time(0, 0),
        quiet_hours_end=time(0, 0),
    )
    return _add(session, Shop(**{**defaults, **kw}))


def staff(session: Session, shop: Shop, password: str = "pw-123456", **kw) -> StaffUser:
    user = StaffUser(
        shop_id=shop.id,
        email=kw.pop("email", f"staff{next(_seq)}@example.com"),
        role=kw.pop("role", "owner"),
        **kw,
    )
    user.set_password(password)
    return _add(session, user)


def resource(session: Session, shop: Shop, **kw) -> Resource:
    name = kw.pop("name", f"Chair {next(_seq)}")
    return _add(session, Resource(shop_id=shop.id, name=name, **kw))


def service(session: Session, shop: Shop, **kw) -> Service:
    defaults = dict(
        name=f"Service {next(_seq)}",
        duration_minutes=30,
        price_minor=5000,
        deposit_kind=DepositKind.FIXED,
        deposit_value=2000,
    )
    return _add(session, Service(shop_id=shop.id, **{**defaults, **kw}))


def customer(session: Session, shop: Shop, **kw) -> Customer:
    n = next(_seq)
    defaults = dict(name=f"Customer {n}", phone=f"+4479112{n:05d}", sms_opt_in=True)
    return _add(session, Customer(shop_id=shop.id, **{**defaults, **kw}))


def appointment(
    session: Session,
    resource: Resource,
    customer: Customer,
    service: Service,
    starts_at: datetime | None = None,
    paid: bool = False,
    **kw,
) -> Appointment:
    starts_at = starts_at or utcnow() + timedelta(days=2)
    appt = _add(
        session,
        Appointment(
            shop_id=resource.shop_id,
            resource_id=resource.id,
            customer_id=customer.id,
            service_id=service.id,
            starts_at=starts_at,
            ends_at=kw.pop("ends_at", starts_at + timedelta(minutes=service.duration_minutes)),
            status=kw.pop("status", AppointmentStatus.BOOKED),
            **kw,
        ),
    )
    if paid:
        payment(session, appt)
    return appt


def payment(session: Session, appt: Appointment, **kw) -> Payment:
    defaults = dict(
        provider="sandbox",
        provider_ref=f"pay-{next(_seq)}",
        amount_minor=2000,
        currency="GBP",
        status=PaymentStatus.SUCCEEDED,
    )
    return _add(session, Payment(appointment_id=appt.id, **{**defaults, **kw}))


def opening(session: Session, source: Appointment, **kw) -> SlotOpening:
    return _add(
        session,
        SlotOpening(
            shop_id=source.shop_id,
            resource_id=source.resource_id,
            service_id=source.service_id,
            source_appointment_id=source.id,
            starts_at=source.starts_at,
            ends_at=source.ends_at,
            **kw,
        ),
    )


def offer(session: Session, opening: SlotOpening, customer: Customer, **kw) -> SlotOffer:
    defaults = dict(
        expires_at=utcnow() + timedelta(minutes=15),
        phone=customer.phone,
        sender_number=sender_number(opening.shop),
    )
    return _add(
        session,
        SlotOffer(slot_opening_id=opening.id, customer_id=customer.id, **{**defaults, **kw}),
    )


def block(session: Session, shop: Shop, starts_at: datetime, ends_at: datetime, **kw):
    """A busy block (manual unless ``source`` says otherwise; ``resource=None``: whole shop)."""
    on = kw.pop("resource", None)
    source = kw.pop("source", "manual")
    if source != "manual":
        if "connection_id" not in kw:
            synced_from = on if on is not None else resource(session, shop)
            kw["connection_id"] = connection(session, synced_from, provider=source).id
        kw.setdefault("external_id", f"event-{next(_seq)}")
    return _add(
        session,
        BusyBlock(
            shop_id=shop.id,
            resource_id=on.id if on is not None else None,
            starts_at=starts_at,
            ends_at=ends_at,
            source=source,
            **{"reason": "Training day", **kw},
        ),
    )


def connection(session: Session, resource: Resource, provider: str = "google", **kw):
    """The resource's calendar connection (one per resource: reused if it exists)."""
    existing = session.scalar(
        select(CalendarConnection).where(CalendarConnection.resource_id == resource.id)
    )
    if existing is not None:
        return existing
    return _add(
        session,
        CalendarConnection(
            shop_id=resource.shop_id,
            resource_id=resource.id,
            provider=provider,
            secret=kw.pop("secret", b"not-a-real-token"),
            **kw,
        ),
    )
