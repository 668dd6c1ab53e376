"""Fixtures and helpers for the admin panel's tests: two shops, logged-in clients, CSRF."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import pytest
from flask import Flask, g, has_app_context
from flask.testing import FlaskClient

from recovery.models import (
    Appointment,
    AppointmentStatus,
    Customer,
    Message,
    OpeningStatus,
    Payment,
    PaymentStatus,
    Resource,
    Service,
    Shop,
    SlotOffer,
    SlotOpening,
    StaffUser,
)
from tests import factories as f

PASSWORD = "pw-123456"
CSRF_RE = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


@dataclass
class World:
    """One shop with one of everything the admin shows."""

    shop: Shop
    owner: StaffUser
    clerk: StaffUser  # plain staff
    chair: Resource
    service: Service
    customers: list[Customer]
    booking: Appointment  # paid, booked, tomorrow
    payment: Payment  # the booking's (succeeded) deposit
    opening: SlotOpening
    offer: SlotOffer  # live, on the opening
    held: Appointment  # pending_payment, won from the opening
    pending: Payment  # the held booking's deposit, waiting
    message: Message


def build_world(session, now, name: str, sender: str) -> World:
    # Each shop its own sender number, as the settings form (and the database) require.
    shop = f.shop(session, name=name, sms_from_number=sender)
    owner = f.staff(session, shop, password=PASSWORD, role="owner")
    clerk = f.staff(session, shop, password=PASSWORD, role="staff")
    chair = f.resource(session, shop)
    service = f.service(session, shop)
    customers = [
        f.customer(session, shop, name=f"{name} C{i}", last_settled_at=now - timedelta(days=i + 1))
        for i in range(3)
    ]
    booking = f.appointment(
        session, chair, customers[0], service, starts_at=now + timedelta(days=1)
    )
    payment = f.payment(session, booking)
    cancelled = f.appointment(
        session,
        chair,
        customers[1],
        service,
        starts_at=now + timedelta(days=2),
        status=AppointmentStatus.CANCELLED,
        cancelled_at=now - timedelta(hours=1),
    )
    opening = f.opening(session, cancelled, status=OpeningStatus.OPEN, created_at=now)
    expires = now + timedelta(minutes=15)
    offer = f.offer(session, opening, customers[2], sent_at=now, expires_at=expires)
    held = f.appointment(
        session,
        chair,
        customers[2],
        service,
        starts_at=now + timedelta(days=3),
        status=AppointmentStatus.PENDING_PAYMENT,
    )
    pending = f.payment(session, held, status=PaymentStatus.PENDING)
    message = Message(
        shop_id=shop.id,
        customer_id=customers[2].id,
        slot_offer_id=offer.id,
        direction="outbound",
        from_number=shop.sms_from_number,
        to_number=customers[2].phone,
        body=f"{name}: A slot opened.",
        purpose="offer",
        status="sent",
        cost_estimate_minor=4,
        created_at=now,
    )
    session.add(message)
    session.flush()
    return World(
        shop,
        owner,
        clerk,
        chair,
        service,
        customers,
        booking,
        payment,
        opening,
        offer,
        held,
        pending,
        message,
    )


def forget_cached_request_state() -> None:
    """The ``session`` fixture keeps one app context for the whole test, so ``g`` outlives
    each request: Flask-Login caches the user and Flask-WTF the CSRF token there. Forget
    both, or a second client inherits the first one's."""
    if has_app_context():
        g.pop("_login_user", None)
        g.pop("csrf_token", None)


def csrf_token(client: FlaskClient, url: str = "/admin/") -> str:
    """The CSRF token of the client's session, read from a page that has a form."""
    forget_cached_request_state()
    page = client.get(url).get_data(as_text=True)
    match = CSRF_RE.search(page)
    assert match, f"no CSRF token on {url}"
    return match.group(1)


def login(client: FlaskClient, email: str, password: str = PASSWORD):
    forget_cached_request_state()
    token = csrf_token(client, "/login")
    return client.post("/login", data={"csrf_token": token, "email": email, "password": password})


def post(client: FlaskClient, url: str, data: dict | None = None, **kw):
    """POST with the session's CSRF token, like a form in the page would."""
    return client.post(url, data={"csrf_token": csrf_token(client), **(data or {})}, **kw)


def act(client: FlaskClient, endpoint: str, action: str, *ids: int, **kw):
    """Run a list action (the "With selected" menu) on rows."""
    data = {"action": action, "rowid": [str(i) for i in ids], "url": f"/admin/{endpoint}/"}
    return post(client, f"/admin/{endpoint}/action/", data, **kw)


@pytest.fixture
def two_shops(session, clock, recorder) -> tuple[World, World]:
    a = build_world(session, clock.now, "Shop A", "+447700800001")
    b = build_world(session, clock.now, "Shop B", "+447700800002")
    session.commit()
    return a, b


@pytest.fixture
def shop_a(two_shops) -> World:
    return two_shops[0]


@pytest.fixture
def shop_b(two_shops) -> World:
    return two_shops[1]


@pytest.fixture
def owner_client(app: Flask, shop_a: World) -> Iterator[FlaskClient]:
    """A client logged in as shop A's owner."""
    client = app.test_client()
    assert login(client, shop_a.owner.email).status_code == 302
    yield client


@pytest.fixture
def clerk_client(app: Flask, shop_a: World) -> Iterator[FlaskClient]:
    """A client logged in as shop A's plain staff member."""
    client = app.test_client()
    assert login(client, shop_a.clerk.email).status_code == 302
    yield client


# What ``from tests.admin_support import *`` brings into a test module: the fixtures.
__all__ = ["clerk_client", "owner_client", "shop_a", "shop_b", "two_shops"]


def settings_form(shop, **changes) -> dict:
    """The shop settings form as it would be posted, with ``changes`` applied."""
    data = {
        "name": shop.name,
        "timezone": shop.timezone,
        "currency": shop.currency,
        "locale": shop.locale,
        "sms_from_number": shop.sms_from_number or "",
        "contact_phone": shop.contact_phone or "",
        "offer_ttl_minutes": shop.offer_ttl_minutes,
        "cooldown_hours": shop.cooldown_hours,
        "min_lead_minutes": shop.min_lead_minutes,
        "payment_hold_minutes": shop.payment_hold_minutes,
        "full_refund_hours": shop.full_refund_hours,
        "late_refund_percent": shop.late_refund_percent,
        "booking_hold_hours": shop.booking_hold_hours,
        "self_cancel_cutoff_hours": shop.self_cancel_cutoff_hours,
        "reminder_hours": shop.reminder_hours,
        "quiet_hours_start": shop.quiet_hours_start.strftime("%H:%M"),
        "quiet_hours_end": shop.quiet_hours_end.strftime("%H:%M"),
        # Checkboxes: posted only when ticked.
        **{
            name: "y"
            for name in ("send_confirmations", "send_reminders", "send_offers")
            if getattr(shop, name)
        },
    }
    data.update(changes)
    return data
