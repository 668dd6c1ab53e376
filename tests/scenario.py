"""A small shop with customers and a paid booking to cancel: the usual test scene."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from recovery.models import Appointment, Customer, Resource, Service, Shop
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
