"""A small shop with customers and a paid booking to cancel: the usual test scene."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from jobs import tasks
from recovery.models import (
    Appointment,
    Customer,
    Message,
    MessageStatus,
    Resource,
    Service,
    Shop,
)
from tests import factories as f


@dataclass
class Scene:
    shop: Shop
    chair: Resource
    service: Service
    owner: Customer  # whose paid booking gets cancelled
    booking: Appointment
    customers: list[Customer] = field(default_factory=list)  # in eligibility order


def scene(session: Session, now: datetime, n_customers: int = 3, **shop_kw) -> Scene:
    """Customers are given settled histories so they are offered in list order."""
    shop = f.shop(session, **shop_kw)
    chair = f.resource(session, shop)
    service = f.service(session, shop)
    owner = f.customer(session, shop, name="Owner")
    booking = f.appointment(
        session, chair, owner, service, starts_at=now + timedelta(days=1), paid=True
    )
    customers = [
        f.customer(session, shop, name=f"C{i}", last_settled_at=now - timedelta(days=i + 1))
        for i in range(n_customers)
    ]
    return Scene(shop, chair, service, owner, booking, customers)


def send_texts(session: Session) -> list[str]:
    """Run the real send job for every queued text (the sandbox provider accepts each at
    the app's clock). An offer's time to answer starts when its text is accepted, so a
    test that lets an offer run out sends its text first."""
    queued = session.scalars(
        select(Message.id).where(Message.status == MessageStatus.QUEUED).order_by(Message.id)
    ).all()
    return [tasks.send_message(message_id) for message_id in queued]
