"""The admin pages: access, CSRF, dashboard, forms (overlaps, phones, money), CSV import,
owner-only settings and staff, messages, and the sandbox tools' visibility."""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime, timedelta

import pytest

from recovery.models import (
    Appointment,
    Customer,
    Message,
    OpeningStatus,
    Service,
    Shop,
    StaffUser,
)
from tests import factories as f
from tests.admin_support import *  # noqa: F403 (the shared fixtures)
from tests.admin_support import PASSWORD, act, csrf_token, login, post, settings_form

PAGES = [
    "/admin/",
    "/admin/calendar/",
    "/admin/openings/",
    "/admin/offers/",
    "/admin/appointments/",
    "/admin/appointments/new/",
    "/admin/customers/",
    "/admin/customers/import/",
    "/admin/messages/",
    "/admin/payments/",
    "/admin/services/",
    "/admin/resources/",
    "/admin/shop_settings/",
    "/admin/staff/",
    "/admin/sandbox/",
]


def text(response) -> str:
    return response.get_data(as_text=True)


# ---------------------------------------------------------------- access


@pytest.mark.parametrize("url", PAGES)
def test_every_page_needs_a_login(client, session, url):
    response = client.get(url)
    assert response.status_code == 302
    assert "/login?next=" in response.location


@pytest.mark.parametrize("url", PAGES)
def test_every_page_opens_for_the_owner(owner_client, url):
    response = owner_client.get(url, follow_redirects=True)
    assert response.status_code == 200, url


@pytest.mark.parametrize("url", ["/admin/shop_settings/", "/admin/staff/", "/admin/staff/new/"])
def test_owner_only_pages_refuse_plain_staff(clerk_client, shop_a, url):
    assert clerk_client.get(url).status_code == 403
    assert clerk_client.get(f"/admin/shop_settings/edit/?id={shop_a.shop.id}").status_code == 403
    menu = text(clerk_client.get("/admin/"))
    assert "/admin/staff/" not in menu and "/admin/shop_settings/" not in menu


def test_plain_staff_use_the_rest(clerk_client, shop_a):
    assert clerk_client.get("/admin/openings/").status_code == 200
    assert (
        clerk_client.get(f"/admin/customers/edit/?id={shop_a.customers[0].id}").status_code == 200
    )


def test_logout_ends_the_session(owner_client):
    response = post(owner_client, "/logout")
    assert response.status_code == 302 and response.location.endswith("/login")
    assert owner_client.get("/admin/").status_code == 302


@pytest.mark.parametrize(
    ("url", "data"),
    [
        ("/admin/appointments/action/", {"action": "cancel", "rowid": "{booking}"}),
        ("/admin/openings/action/", {"action": "expire", "rowid": "{opening}"}),
        ("/admin/payments/action/", {"action": "mark_succeeded", "rowid": "{pending}"}),
        ("/admin/customers/new/", {"name": "X", "phone": "07911 200777"}),
        ("/admin/customers/delete/", {"id": "{customer}"}),
        ("/admin/customers/import/", {}),
        ("/admin/sandbox/", {"from_number": "+447911200777", "body": "YES"}),
        ("/admin/appointments/refund/?id={booking}", {"amount": "1", "reason": "x"}),
        ("/admin/shop_settings/edit/?id={shop}", {"name": "Renamed"}),
        ("/logout", {}),
    ],
)
def test_posts_without_a_csrf_token_are_refused(owner_client, session, shop_a, url, data):
    ids = {
        "booking": shop_a.booking.id,
        "opening": shop_a.opening.id,
        "pending": shop_a.pending.id,
        "customer": shop_a.customers[0].id,
        "shop": shop_a.shop.id,
    }
    url = url.format(**ids)
    data = {k: v.format(**ids) for k, v in data.items()}
    response = owner_client.post(url, data=data)
    assert response.status_code == 400
    assert "CSRF" in text(response)
    session.expire_all()
    assert session.get(Appointment, shop_a.booking.id).status == "booked"
    assert session.get(Shop, shop_a.shop.id).name == "Shop A"
    assert owner_client.get("/admin/").status_code == 200  # still logged in


# ---------------------------------------------------------------- dashboard


@pytest.fixture
def dashboard_shop(session, clock):
    now = clock.now
    shop = f.shop(session, name="Dash", timezone="America/New_York", currency="USD", locale="en_US")
    staff = f.staff(session, shop, password=PASSWORD)
    chair = f.resource(session, shop)
    service = f.service(session, shop, price_minor=5000, deposit_value=2000)
    people = [f.customer(session, shop) for _ in range(4)]

    def opening(days_ago: float, status: str, starts_in_days: int, fill_minutes=None):
        created = now - timedelta(days=days_ago)
        source = f.appointment(
            session,
            chair,
            people[0],
            service,
            starts_at=now + timedelta(days=starts_in_days),
            status="cancelled",
            cancelled_at=created,
        )
        filled_at = created + timedelta(minutes=fill_minutes) if fill_minutes else None
        made = f.opening(session, source, status=status, created_at=created, filled_at=filled_at)
        if status == OpeningStatus.FILLED:
            f.appointment(
                session,
                chair,
                people[1],
                service,
                starts_at=source.starts_at,
                status="booked",
                source_slot_opening_id=made.id,
                created_at=filled_at,
            )
        return made

    opening(0.1, OpeningStatus.FILLED, 1, fill_minutes=10)
    opening(1, OpeningStatus.FILLED, 2, fill_minutes=30)
    opening(2, OpeningStatus.EXPIRED, 3)
    opening(3, OpeningStatus.OPEN, 4)
    opening(12, OpeningStatus.FILLED, 5, fill_minutes=5)  # before the default period
    for status in ("sent", "delivered", "queued", "failed"):
        session.add(
            Message(
                shop_id=shop.id,
                direction="outbound",
                from_number="+15005550006",
                to_number=people[2].phone,
                body="A slot opened.",
                purpose="offer",
                status=status,
                segments=1,
                cost_estimate_minor=4,
                created_at=now - timedelta(hours=1),
            )
        )
    session.commit()
    return staff


def metric(page: str, key: str) -> str:
    return re.search(rf'data-metric="{key}">([^<]*)<', page).group(1).strip()


def test_dashboard_shows_the_last_seven_days(app, dashboard_shop):
    client = app.test_client()
    login(client, dashboard_shop.email)
    page = text(client.get("/admin/"))
    assert metric(page, "recovered") == "2"
    assert metric(page, "rate") == "50%"  # 2 filled of 4 openings
    assert "2 filled of 4 openings" in page
    assert metric(page, "median") == "20 min"  # median of 10 and 30 minutes
    assert metric(page, "revenue") == "$100"  # two $50 services, in the shop's currency
    assert metric(page, "sms") == "2"
    assert metric(page, "sms_cost") == "$0.08"
    svg = page[page.index("<svg") : page.index("</svg>")]
    assert 'xmlns="http://www.w3.org/2000/svg"' in svg and "<script" not in svg
    outcomes = re.findall(r'data-outcome="(\w+)" data-count="(\d+)"', svg)
    assert sorted(outcomes) == [("expired", "1"), ("filled", "1"), ("filled", "1"), ("open", "1")]
    assert "http" not in svg.replace("http://www.w3.org/2000/svg", "")  # nothing fetched


def test_dashboard_period_is_chosen_in_the_shops_days(app, dashboard_shop):
    client = app.test_client()
    login(client, dashboard_shop.email)
    page = text(client.get("/admin/?start=2025-12-25&end=2026-01-12"))
    assert metric(page, "recovered") == "3"
    assert "3 filled of 5 openings" in page
    bad = text(client.get("/admin/?start=2026-13-01"))
    assert "Dates must look like 2026-01-31" in bad
    backwards = text(client.get("/admin/?start=2026-01-10&end=2026-01-01"))
    assert "first day is after its last day" in backwards


# ---------------------------------------------------------------- appointments


def new_appointment(client, world, starts_at: str, **extra):
    data = {
        "customer": world.customers[1].id,
        "service": world.service.id,
        "resource": world.chair.id,
        "starts_at": starts_at,
        **extra,
    }
    return post(client, "/admin/appointments/new/", data)


def test_create_an_appointment_in_local_time(owner_client, session, shop_a):
    response = new_appointment(owner_client, shop_a, "2026-07-01T10:00")  # BST
    assert response.status_code == 302
    appt = session.query(Appointment).filter_by(starts_at=datetime(2026, 7, 1, 9, tzinfo=UTC)).one()
    assert appt.starts_at == datetime(2026, 7, 1, 9, 0, tzinfo=UTC)
    assert appt.ends_at == appt.starts_at + timedelta(minutes=30)
    assert appt.shop_id == shop_a.shop.id
    # The service asks for a deposit: the booking waits for it and the customer is texted.
    assert appt.status == "pending_payment" and appt.payments[0].status == "pending"
    assert session.query(Message).filter_by(appointment_id=appt.id).one().purpose == (
        "payment_request"
    )
    listing = text(owner_client.get("/admin/appointments/"))
    assert "Wed 01 Jul 2026, 10:00" in listing


def test_staff_record_a_deposit_paid_at_the_desk_with_a_reason(owner_client, session, shop_a):
    response = new_appointment(owner_client, shop_a, "2026-07-02T10:00")
    appt = session.query(Appointment).filter_by(starts_at=datetime(2026, 7, 2, 9, tzinfo=UTC)).one()
    url = f"/admin/appointments/deposit/?id={appt.id}"
    assert "Paid at the desk" in text(owner_client.get(url))
    response = post(owner_client, url, {"decision": "desk", "reason": ""})
    assert response.status_code == 422
    response = post(owner_client, url, {"decision": "desk", "reason": "cash at the till"})
    assert response.status_code == 302
    session.expire_all()
    appt = session.get(Appointment, appt.id)
    assert appt.status == "booked"
    desk = [p for p in appt.payments if p.provider == "desk"]
    assert [(p.status, p.note) for p in desk] == [("succeeded", "cash at the till")]
    assert "at the desk: cash at the till" in text(
        owner_client.get(f"/admin/appointments/details/?id={appt.id}")
    )


def test_an_overlapping_appointment_is_refused_clearly(owner_client, session, shop_a):
    before = session.query(Appointment).count()
    taken = shop_a.booking.starts_at + timedelta(minutes=15)  # inside tomorrow's booking
    response = new_appointment(owner_client, shop_a, f"{taken:%Y-%m-%dT%H:%M}")
    assert response.status_code == 200
    assert "That resource is already booked at that time" in text(response)
    assert session.query(Appointment).count() == before


def test_moving_an_appointment_onto_another_is_refused(owner_client, session, shop_a):
    other = f.appointment(
        session,
        shop_a.chair,
        shop_a.customers[1],
        shop_a.service,
        starts_at=shop_a.booking.starts_at + timedelta(hours=2),
    )
    session.commit()
    target = f"{shop_a.booking.starts_at:%Y-%m-%dT%H:%M}"
    data = {
        "customer": other.customer_id,
        "service": other.service_id,
        "resource": other.resource_id,
        "starts_at": target,
    }
    response = post(owner_client, f"/admin/appointments/edit/?id={other.id}", data)
    assert response.status_code == 200
    assert "That resource is already booked at that time" in text(response)
    session.expire_all()
    assert session.get(Appointment, other.id).starts_at == shop_a.booking.starts_at + timedelta(
        hours=2
    )
    # Moving it to a free time works, and the end follows the service's duration.
    data["starts_at"] = f"{shop_a.booking.starts_at + timedelta(hours=4):%Y-%m-%dT%H:%M}"
    assert post(owner_client, f"/admin/appointments/edit/?id={other.id}", data).status_code == 302
    session.expire_all()
    moved = session.get(Appointment, other.id)
    assert moved.starts_at == shop_a.booking.starts_at + timedelta(hours=4)
    assert moved.ends_at == moved.starts_at + timedelta(minutes=shop_a.service.duration_minutes)
    # The customer is told the new time, with their manage link.
    [told] = session.query(Message).filter_by(appointment_id=other.id, purpose="changed").all()
    assert "has moved to" in told.body and moved.manage_token in told.body


def test_the_database_constraint_is_also_a_clear_error(owner_client, session, shop_a, monkeypatch):
    """If the in-code check misses a race, the exclusion constraint's refusal reads the same."""
    import admin.appointments as views

    monkeypatch.setattr(views, "ensure_free", lambda *a, **kw: None)
    taken = shop_a.booking.starts_at
    response = new_appointment(owner_client, shop_a, f"{taken:%Y-%m-%dT%H:%M}")
    assert response.status_code == 200
    assert "That resource is already booked at that time" in text(response)
    assert "IntegrityError" not in text(response) and "psycopg" not in text(response)


def test_a_cancelled_appointment_cannot_be_edited(owner_client, session, shop_a):
    act(owner_client, "appointments", "cancel", shop_a.booking.id)
    data = {
        "customer": shop_a.customers[0].id,
        "service": shop_a.service.id,
        "resource": shop_a.chair.id,
        "starts_at": "2026-02-01T10:00",
    }
    response = post(owner_client, f"/admin/appointments/edit/?id={shop_a.booking.id}", data)
    assert "Only a booked appointment can be edited" in text(response)


def test_filters_by_status_and_local_day(owner_client, shop_a):
    filled = text(owner_client.get("/admin/openings/?flt0_status_equals=filled"))
    assert f"id={shop_a.opening.id}" not in filled
    opened = text(owner_client.get("/admin/openings/?flt0_status_equals=open"))
    assert f"id={shop_a.opening.id}" in opened
    day = f"{shop_a.opening.starts_at:%Y-%m-%d}"
    on_day = text(owner_client.get(f"/admin/openings/?flt0_starts_on={day}"))
    assert f"id={shop_a.opening.id}" in on_day
    other_day = text(owner_client.get("/admin/openings/?flt0_starts_on=2026-03-01"))
    assert f"id={shop_a.opening.id}" not in other_day
    booked = text(owner_client.get("/admin/appointments/?flt0_status_equals=pending_payment"))
    assert f"details/?id={shop_a.held.id}" in booked
    assert f"details/?id={shop_a.booking.id}" not in booked


# ---------------------------------------------------------------- customers


def test_an_invalid_phone_is_refused_with_a_clear_error(owner_client, session, shop_a):
    response = post(owner_client, "/admin/customers/new/", {"name": "Bad", "phone": "12345"})
    assert response.status_code == 200
    assert "is not a valid phone number" in text(response)
    assert session.query(Customer).filter_by(name="Bad").count() == 0


def test_a_duplicate_phone_is_refused_clearly(owner_client, session, shop_a):
    phone = shop_a.customers[0].phone
    response = post(owner_client, "/admin/customers/new/", {"name": "Twin", "phone": phone})
    assert response.status_code == 200
    assert "already has that phone number" in text(response)


def test_customers_search_and_opt_in_state(owner_client, session, shop_a):
    stopped = shop_a.customers[1]
    stopped.opted_out_at = datetime(2026, 1, 10, 12, tzinfo=UTC)
    stopped.sms_opt_in = False
    session.commit()
    page = text(owner_client.get(f"/admin/customers/?search={stopped.name}"))
    assert stopped.name in page and shop_a.customers[0].name not in page
    assert "opted out (STOP) 10 Jan 2026" in page
    assert "opted in" in text(owner_client.get("/admin/customers/"))


def test_csv_import_reports_every_row(owner_client, session, shop_a, shop_b):
    existing = shop_a.customers[0].phone
    csv_text = (
        "name,phone,sms_opt_in\n"
        "Ada,07911 200301,yes\n"
        "Bob,not a phone,yes\n"
        f"Cy,{existing},no\n"
        ",07911 200302,yes\n"
        "Dee,+44 7911 200303,\n"
        "Ada Again,07911200301,yes\n"
        f"Eve,{shop_b.customers[0].phone},yes\n"  # another shop's customer: fine here
    )
    data = {"file": (io.BytesIO(csv_text.encode()), "customers.csv")}
    response = post(
        owner_client, "/admin/customers/import/", data, content_type="multipart/form-data"
    )
    assert response.status_code == 200
    page = text(response)
    rows = re.findall(r"<tr[^>]*>\s*<td>(\d+)</td><td>[^<]*</td><td>[^<]*</td><td>(\w+)</td>", page)
    assert rows == [
        ("2", "created"),
        ("3", "error"),
        ("4", "skipped"),
        ("5", "error"),
        ("6", "created"),
        ("7", "skipped"),
        ("8", "created"),
    ]
    assert "3 created, 4 not imported." in page
    added = {c.name: c for c in session.query(Customer).filter_by(shop_id=shop_a.shop.id)}
    assert added["Ada"].phone == "+447911200301" and added["Ada"].sms_opt_in
    assert not added["Dee"].sms_opt_in
    assert "Eve" in added


def test_csv_without_a_header_is_refused(owner_client, session, shop_a):
    data = {"file": (io.BytesIO(b"Ada,07911 200301\n"), "c.csv")}
    response = post(
        owner_client, "/admin/customers/import/", data, content_type="multipart/form-data"
    )
    assert response.status_code == 422
    assert "The first row must name the columns" in text(response)


# ---------------------------------------------------------------- services, settings, staff


def test_services_take_money_in_the_shops_currency(owner_client, session, shop_a):
    data = {
        "name": "Colour",
        "duration_minutes": "90",
        "price_minor": "45.50",
        "deposit_kind": "fixed",
        "deposit_amount": "15",
        "deposit_percent": "",
        "active": "y",
    }
    assert post(owner_client, "/admin/services/new/", data).status_code == 302
    service = session.query(Service).filter_by(name="Colour").one()
    assert (service.price_minor, service.deposit_kind, service.deposit_value) == (
        4550,
        "fixed",
        1500,
    )
    listing = text(owner_client.get("/admin/services/"))
    assert "£45.50" in listing and "£15" in listing

    data.update(deposit_kind="percent", deposit_amount="", deposit_percent="40")
    response = post(owner_client, f"/admin/services/edit/?id={service.id}", data)
    assert response.status_code == 302
    session.expire_all()
    assert session.get(Service, service.id).deposit_value == 40
    assert "40% (£18.20)" in text(owner_client.get("/admin/services/"))
    edit = text(owner_client.get(f"/admin/services/edit/?id={service.id}"))
    assert 'value="45.50"' in edit

    data.update(deposit_kind="fixed", deposit_amount="")
    response = post(owner_client, f"/admin/services/edit/?id={service.id}", data)
    assert "A fixed deposit needs an amount." in text(response)


def test_owner_changes_the_recovery_policy(owner_client, session, shop_a):
    url = f"/admin/shop_settings/edit/?id={shop_a.shop.id}"
    assert owner_client.get("/admin/shop_settings/").location.endswith(url)
    form = settings_form(
        shop_a.shop,
        offer_ttl_minutes=20,
        cooldown_hours=48,
        min_lead_minutes=90,
        payment_hold_minutes=10,
        require_prior_settled_booking="y",
        late_refund_percent=25,
        sms_from_number="07911 200400",
    )
    assert post(owner_client, url, form).status_code == 302
    session.expire_all()
    shop = session.get(Shop, shop_a.shop.id)
    assert (shop.offer_ttl_minutes, shop.cooldown_hours, shop.min_lead_minutes) == (20, 48, 90)
    assert shop.payment_hold_minutes == 10 and shop.require_prior_settled_booking
    assert shop.late_refund_percent == 25 and shop.sms_from_number == "+447911200400"


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("timezone", "Mars/Olympus", "Not a time zone"),
        ("currency", "XYZW", "Not a currency code"),
        ("offer_ttl_minutes", "0", "Number must be between 1 and 1440"),
        ("late_refund_percent", "150", "Number must be between 0 and 100"),
        ("sms_from_number", "123", "is not a valid phone number"),
    ],
)
def test_settings_are_validated(owner_client, session, shop_a, field, value, message):
    url = f"/admin/shop_settings/edit/?id={shop_a.shop.id}"
    response = post(owner_client, url, settings_form(shop_a.shop, **{field: value}))
    assert response.status_code == 200
    assert message in text(response)


def test_owner_adds_staff_who_can_then_log_in(app, owner_client, session, shop_a):
    data = {"email": "New@Shop.example", "name": "New", "role": "staff", "active": "y"}
    refused = post(owner_client, "/admin/staff/new/", data)
    assert "A new account needs a password." in text(refused)
    data["password"] = "a-long-password"
    assert post(owner_client, "/admin/staff/new/", data).status_code == 302
    user = session.query(StaffUser).filter_by(email="new@shop.example").one()
    assert user.shop_id == shop_a.shop.id and user.password_hash != "a-long-password"
    fresh = app.test_client()
    assert login(fresh, "new@shop.example", "a-long-password").status_code == 302
    assert fresh.get("/admin/staff/").status_code == 403  # plain staff


def test_owner_cannot_lock_themselves_out(owner_client, session, shop_a):
    me = shop_a.owner
    data = {"email": me.email, "name": "", "role": "staff", "active": "y"}
    response = post(owner_client, f"/admin/staff/edit/?id={me.id}", data)
    assert "You cannot demote or deactivate your own account." in text(response)
    response = post(owner_client, "/admin/staff/delete/", {"id": me.id}, follow_redirects=True)
    assert "You cannot delete your own account." in text(response)
    session.expire_all()
    assert session.get(StaffUser, me.id).is_owner


# ---------------------------------------------------------------- messages and payments


def test_messages_log_shows_status_and_cost(owner_client, shop_a):
    page = text(owner_client.get("/admin/messages/"))
    assert "Shop A: A slot opened." in page and "£0.04" in page
    assert 'data-status="sent"' in page
    inbound_only = text(owner_client.get("/admin/messages/?flt0_direction_equals=inbound"))
    assert "Shop A: A slot opened." not in inbound_only


def test_payments_show_money_and_sandbox_buttons(owner_client, shop_a):
    page = text(owner_client.get(f"/admin/appointments/details/?id={shop_a.held.id}"))
    assert "£20" in page and 'data-action="payments-mark_succeeded"' in page
    assert "Sandbox: mark succeeded" in text(owner_client.get("/admin/payments/"))


def test_sandbox_tools_are_hidden_with_real_providers(make_app, session, shop_a):
    real = make_app(
        TWILIO_ACCOUNT_SID="AC" + "0" * 32,
        TWILIO_AUTH_TOKEN="token",
        TWILIO_FROM_NUMBER="+447700900000",
        STRIPE_SECRET_KEY="sk_test_x",
    )
    client = real.test_client()
    assert login(client, shop_a.owner.email).status_code == 302
    assert client.get("/admin/sandbox/").status_code == 404
    assert "/admin/sandbox/" not in text(client.get("/admin/"))
    assert "mark_succeeded" not in text(client.get("/admin/payments/"))
    page = text(client.get(f"/admin/appointments/details/?id={shop_a.held.id}"))
    assert "payments-mark_succeeded" not in page
    # The action cannot be forced either.
    token = csrf_token(client)
    client.post(
        "/admin/payments/action/",
        data={"csrf_token": token, "action": "mark_succeeded", "rowid": shop_a.pending.id},
    )
    session.expire_all()
    assert shop_a.pending.status == "pending"
    simulated = client.post(
        "/admin/sandbox/", data={"csrf_token": token, "from_number": "+1", "body": "YES"}
    )
    assert simulated.status_code == 404
