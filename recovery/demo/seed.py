"""The demo shop of the embedded default: seeded once, never duplicated."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from recovery.db import utcnow
from recovery.demo.history import make_history
from recovery.models import (
    Appointment,
    AppointmentStatus,
    Customer,
    DepositKind,
    Payment,
    PaymentStatus,
    Resource,
    Service,
    Shop,
    StaffRole,
    StaffUser,
)
from recovery.payments.money import deposit_minor

DEMO_SHOP = "Demo Salon"
DEMO_EMAIL = "owner@demo.salon"
DEMO_PASSWORD = "recover-demo"  # noqa: S105 (demo only; refused in production)

FIRST_NAMES = (
    "Amelia Oliver Isla George Ava Noah Mia Arthur Ivy Leo "
    "Freya Oscar Lily Harry Grace Jack Sophia Charlie Ella Theo"
).split()


@dataclass(frozen=True)
class DemoLogin:
    email: str
    password: str
    created: bool


def seed_demo(session: Session, now: datetime | None = None) -> DemoLogin:
    """Create the demo shop with staff, resources, services, customers and bookings,
    and a few weeks of recovery history made by running the loop (``demo.history``).

    Idempotent: when the demo shop exists, nothing is added.
    """
    existing = session.scalar(select(Shop).where(Shop.name == DEMO_SHOP))
    if existing is not None:
        return DemoLogin(DEMO_EMAIL, DEMO_PASSWORD, created=False)

    now = now or utcnow()
    rng = random.Random(7)  # the same demo every time
    shop = Shop(
        name=DEMO_SHOP,
        timezone="Europe/London",
        currency="GBP",
        locale="en_GB",
        contact_phone="+442071234567",
        offer_ttl_minutes=15,
        cooldown_hours=24,
        min_lead_minutes=60,
        payment_hold_minutes=15,
    )
    session.add(shop)
    session.flush()

    owner = StaffUser(shop_id=shop.id, email=DEMO_EMAIL, name="Demo Owner", role=StaffRole.OWNER)
    owner.set_password(DEMO_PASSWORD)
    session.add(owner)

    chairs = [Resource(shop_id=shop.id, name=f"Chair {n}") for n in (1, 2)]
    services = [
        Service(
            shop_id=shop.id,
            name="Haircut",
            duration_minutes=30,
            price_minor=3000,
            deposit_kind=DepositKind.NONE,
            deposit_value=0,
        ),
        Service(
            shop_id=shop.id,
            name="Colour",
            duration_minutes=90,
            price_minor=9000,
            deposit_kind=DepositKind.FIXED,
            deposit_value=2000,
        ),
        Service(
            shop_id=shop.id,
            name="Cut & finish",
            duration_minutes=60,
            price_minor=5000,
            deposit_kind=DepositKind.PERCENT,
            deposit_value=40,
        ),
    ]
    # Opted in, with textable numbers, and customers since before the history begins.
    customers = [
        Customer(
            shop_id=shop.id,
            name=f"{name} Demo",
            phone=f"+4479111234{i:02d}",
            sms_opt_in=True,
            created_at=now - timedelta(days=90),
        )
        for i, name in enumerate(FIRST_NAMES, start=1)
    ]
    session.add_all([*chairs, *services, *customers])
    session.flush()

    zone = ZoneInfo(shop.timezone)
    today = now.astimezone(zone).date()
    hours = [time(h, m) for h in range(9, 17) for m in (0, 30)]

    def book(
        day_offset: int,
        slot: time,
        chair: Resource,
        customer: Customer,
        service: Service,
        status: AppointmentStatus,
        paid: bool,
    ) -> None:
        day = today + timedelta(days=day_offset)
        starts = datetime.combine(day, slot, zone).astimezone(now.tzinfo)
        appt = Appointment(
            shop_id=shop.id,
            resource_id=chair.id,
            customer_id=customer.id,
            service_id=service.id,
            starts_at=starts,
            ends_at=starts + timedelta(minutes=service.duration_minutes),
            status=status,
        )
        session.add(appt)
        session.flush()
        amount = deposit_minor(service)
        if paid and amount:
            session.add(
                Payment(
                    appointment_id=appt.id,
                    provider="sandbox",
                    provider_ref=f"demo-{appt.id}",
                    amount_minor=amount,
                    currency=shop.currency,
                    status=PaymentStatus.SUCCEEDED,
                )
            )
        if paid and (customer.last_settled_at is None or starts > customer.last_settled_at):
            customer.last_settled_at = starts

    # Past visits give customers a booking history (it orders who is offered first).
    for i, customer in enumerate(customers[:14]):
        book(
            -(i + 3),
            hours[i % len(hours)],
            chairs[i % 2],
            customer,
            services[i % 3],
            AppointmentStatus.COMPLETED,
            paid=True,
        )
    # Coming days: one booking per chair every ninety minutes, paid where a deposit applies.
    for day in range(1, 5):
        for n, slot in enumerate(hours[::3]):
            chair = chairs[(day + n) % 2]
            service = services[(day + n) % 3]
            customer = rng.choice(customers)
            status = AppointmentStatus.BOOKED
            book(day, slot, chair, customer, service, status, paid=True)
    session.flush()
    make_history(session, shop, now)
    return DemoLogin(DEMO_EMAIL, DEMO_PASSWORD, created=True)
