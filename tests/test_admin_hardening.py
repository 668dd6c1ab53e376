"""Hostile or mistaken input to the admin panel: refused clearly (a 4xx or a form error),
never a 500, and nothing of another shop (or anything at all) changes."""

from __future__ import annotations

import io
import re

import pytest

from recovery.models import (
    Appointment,
    Customer,
    Direction,
    Message,
    OfferStatus,
    Refund,
    Service,
    Shop,
    SlotOffer,
)
from tests import factories as f
from tests.admin_support import *  # noqa: F403 (the shared fixtures)
from tests.admin_support import act, post, settings_form

TOO_BIG = 2**31  # one more than the largest integer id


def text(response) -> str:
    return response.get_data(as_text=True)


def national(phone: str) -> str:
    """``+447911200123`` as staff would type it: ``07911 200123``."""
    assert phone.startswith("+44")
    rest = "0" + phone[3:]
    return f"{rest[:5]} {rest[5:]}"


# ---------------------------------------------------------------- sandbox reply


@pytest.fixture
def shared_sender(session, shop_a, shop_b):
    """Both shops text from the deployment's number (no number of their own)."""
    shop_a.shop.sms_from_number = None
    shop_b.shop.sms_from_number = None
    session.commit()


def simulate(client, from_number: str, body: str):
    data = {"from_number": from_number, "body": body}
    return post(client, "/admin/sandbox/", data, follow_redirects=True)


def inbound_count(session) -> int:
    return session.query(Message).filter_by(direction=Direction.INBOUND).count()


@pytest.mark.parametrize("body", ["YES", "STOP"])
def test_sandbox_reply_cannot_act_for_another_shops_customer(
    owner_client, session, shop_a, shop_b, shared_sender, body
):
    target = shop_b.offer.customer  # holds B's live offer
    for typed in (target.phone, national(target.phone)):
        response = simulate(owner_client, typed, body)
        assert response.status_code == 200
        assert "is not the number of one of Shop A" in text(response)
        assert "nothing was simulated" in text(response)
    session.expire_all()
    assert session.get(SlotOffer, shop_b.offer.id).status == OfferStatus.SENT
    customer = session.get(Customer, target.id)
    assert customer.opted_out_at is None and customer.sms_opt_in
    assert inbound_count(session) == 0


def test_sandbox_reply_reaches_only_the_staffs_shop(
    owner_client, session, shop_a, shop_b, shared_sender
):
    """A phone that is a customer of both shops: the simulated STOP opts out only A's."""
    mine = shop_a.customers[0]
    twin = shop_b.customers[0]
    twin.phone = mine.phone
    session.commit()
    response = simulate(owner_client, national(mine.phone), "STOP")
    assert response.status_code == 200
    assert f"Reply sent to {mine.phone}" in text(response)
    session.expire_all()
    assert session.get(Customer, mine.id).opted_out_at is not None
    twin = session.get(Customer, twin.id)
    assert twin.opted_out_at is None and twin.sms_opt_in


def test_sandbox_reply_from_an_invalid_number_is_refused(owner_client, session, shop_a):
    response = simulate(owner_client, "not a phone", "YES")
    assert "is not the number of one of Shop A" in text(response)
    assert inbound_count(session) == 0


# ---------------------------------------------------------------- settings


def test_a_sender_number_of_another_shop_is_refused(owner_client, session, shop_a, shop_b):
    url = f"/admin/shop_settings/edit/?id={shop_a.shop.id}"
    own = shop_a.shop.sms_from_number
    for typed in (shop_b.shop.sms_from_number, national(shop_b.shop.sms_from_number)):
        response = post(owner_client, url, settings_form(shop_a.shop, sms_from_number=typed))
        assert response.status_code == 200
        assert "Another shop already sends from that number" in text(response)
    session.expire_all()
    assert session.get(Shop, shop_a.shop.id).sms_from_number == own
    # Its own number, or none (the deployment's), is fine.
    assert post(owner_client, url, settings_form(shop_a.shop)).status_code == 302
    response = post(owner_client, url, settings_form(shop_a.shop, sms_from_number=""))
    assert response.status_code == 302
    session.expire_all()
    assert session.get(Shop, shop_a.shop.id).sms_from_number is None


# ---------------------------------------------------------------- bulk delete


def test_bulk_delete_deletes_the_shops_own_rows(owner_client, session, shop_a):
    spare = [f.customer(session, shop_a.shop, name=f"Spare {i}") for i in range(2)]
    session.commit()
    ids = [c.id for c in spare]
    response = act(owner_client, "customers", "delete", *ids, follow_redirects=True)
    assert response.status_code == 200
    assert "2 records were deleted." in text(response)
    session.expire_all()
    assert session.query(Customer).filter(Customer.id.in_(ids)).count() == 0


def test_bulk_delete_of_another_shops_rows_is_not_found(owner_client, session, shop_a, shop_b):
    mine = f.customer(session, shop_a.shop, name="Spare A")
    theirs = f.customer(session, shop_b.shop, name="Spare B")
    session.commit()
    assert act(owner_client, "customers", "delete", theirs.id).status_code == 404
    assert act(owner_client, "customers", "delete", mine.id, theirs.id).status_code == 404
    session.expire_all()
    assert session.get(Customer, theirs.id) is not None
    assert session.get(Customer, mine.id) is not None  # nothing half-done


def test_bulk_delete_keeps_rows_in_use_and_says_why(owner_client, session, shop_a):
    in_use = shop_a.customers[0]  # has a booking
    response = act(owner_client, "customers", "delete", in_use.id, follow_redirects=True)
    assert response.status_code == 200
    assert "Cannot delete. This customer has history" in text(response)
    session.expire_all()
    assert session.get(Customer, in_use.id) is not None
    response = act(owner_client, "staff", "delete", shop_a.owner.id, follow_redirects=True)
    assert "You cannot delete your own account." in text(response)


def test_bulk_delete_is_not_offered_where_deleting_is_not_allowed(owner_client, session, shop_a):
    response = act(owner_client, "appointments", "delete", shop_a.booking.id)
    assert response.status_code == 302
    session.expire_all()
    assert session.get(Appointment, shop_a.booking.id) is not None


# ---------------------------------------------------------------- ids


@pytest.mark.parametrize("ident", [TOO_BIG, 2**63, -1, 0, 2**31 - 1])
def test_ids_out_of_range_are_not_found(owner_client, ident):
    for url in (
        f"/admin/customers/details/?id={ident}",
        f"/admin/customers/edit/?id={ident}",
        f"/admin/appointments/refund/?id={ident}",
        f"/admin/openings/details/?id={ident}",
    ):
        assert owner_client.get(url).status_code == 404, url
    assert post(owner_client, "/admin/customers/delete/", {"id": str(ident)}).status_code == 404
    assert act(owner_client, "customers", "delete", ident).status_code == 404
    assert act(owner_client, "appointments", "cancel", ident).status_code == 404
    assert act(owner_client, "payments", "mark_succeeded", ident).status_code == 404


# ---------------------------------------------------------------- dates


@pytest.mark.parametrize(
    "query",
    [
        "end=9999-12-31",
        "end=0001-01-01",
        "start=9999-12-30&end=9999-12-31",
        "start=0001-01-01&end=0001-01-02",
        "start=1899-12-31",
    ],
)
def test_dashboard_refuses_far_off_dates(owner_client, query):
    response = owner_client.get(f"/admin/?{query}")
    assert response.status_code == 200
    assert "Pick dates between 1900 and 2200." in text(response)
    assert "Showing the last 7 days." in text(response)


@pytest.mark.parametrize(
    "url",
    [
        "/admin/appointments/?flt0_starts_on=9999-12-31",
        "/admin/appointments/?flt0_starts_from=0001-01-01",
        "/admin/messages/?flt0_date_until=9999-12-31",
        "/admin/openings/?flt0_starts_until=9999-12-31",
    ],
)
def test_list_filters_refuse_far_off_dates(owner_client, url):
    response = owner_client.get(url)
    assert response.status_code == 200
    assert "Invalid Filter Value" in text(response)


def test_list_filters_still_take_sane_dates(owner_client, shop_a):
    page = text(owner_client.get("/admin/appointments/?flt0_starts_from=2000-01-01"))
    assert "Invalid Filter Value" not in page
    assert f"details/?id={shop_a.booking.id}" in page


# ---------------------------------------------------------------- money

BAD_AMOUNTS = [
    ("NaN", "Not an amount"),
    ("sNaN", "Not an amount"),
    ("Infinity", "Not an amount"),
    ("-Infinity", "Not an amount"),
    ("1e30", "That amount is too large."),
    ("1e999999", "That amount is too large."),
    ("1000000.01", "That amount is too large."),
]


@pytest.mark.parametrize(("amount", "message"), BAD_AMOUNTS)
def test_service_prices_must_be_real_amounts(owner_client, session, shop_a, amount, message):
    data = {
        "name": "Odd price",
        "duration_minutes": "30",
        "price_minor": amount,
        "deposit_kind": "fixed",
        "deposit_amount": amount,
        "active": "y",
    }
    response = post(owner_client, "/admin/services/new/", data)
    assert response.status_code == 200
    assert message in text(response)
    assert session.query(Service).filter_by(name="Odd price").count() == 0


@pytest.mark.parametrize(("amount", "message"), BAD_AMOUNTS)
def test_refund_amounts_must_be_real_amounts(owner_client, session, shop_a, amount, message):
    url = f"/admin/appointments/refund/?id={shop_a.booking.id}"
    data = {
        "payment_id": shop_a.payment.id,
        "amount": amount,
        "reason": "test",
        "form_token": f"key-{amount}",
    }
    response = post(owner_client, url, data)
    assert response.status_code == 422
    assert message in text(response)
    assert session.query(Refund).count() == 0


# ---------------------------------------------------------------- NUL characters


@pytest.mark.parametrize(
    "url",
    [
        "/admin/customers/?search=a%00b",
        "/admin/messages/?search=a%00b",
        "/admin/openings/?flt0_status_equals=a%00b",
        "/admin/appointments/?flt0_status_equals=a%00b",
        "/admin/?start=2026-01-01%00",
    ],
)
def test_nul_characters_in_the_query_are_refused(owner_client, url):
    response = owner_client.get(url)
    assert response.status_code == 400
    assert "NUL characters are not allowed" in text(response)


def test_nul_characters_in_forms_are_refused(owner_client, session, shop_a):
    response = simulate(owner_client, shop_a.customers[0].phone, "YES\x00")
    assert response.status_code == 400
    assert "NUL characters are not allowed" in text(response)
    assert inbound_count(session) == 0
    response = post(
        owner_client, "/admin/customers/new/", {"name": "A\x00B", "phone": "07911 200555"}
    )
    assert response.status_code == 400
    assert session.query(Customer).filter_by(phone="+447911200555").count() == 0


def import_csv(client, content: str):
    data = {"file": (io.BytesIO(content.encode()), "customers.csv")}
    return post(client, "/admin/customers/import/", data, content_type="multipart/form-data")


def report_rows(page: str) -> list[tuple[str, str]]:
    pattern = r"<tr[^>]*>\s*<td>(\d+)</td><td>[^<]*</td><td>[^<]*</td><td>(\w+)</td>"
    return re.findall(pattern, page)


def test_csv_rows_with_nul_characters_are_reported(owner_client, session, shop_a):
    response = import_csv(
        owner_client, "name,phone\nA\x00da,07911 200301\nBob,07911 2003\x0002\nCy,07911 200303\n"
    )
    assert response.status_code == 200
    page = text(response)
    assert report_rows(page) == [("2", "error"), ("3", "error"), ("4", "created")]
    assert "The row contains NUL characters." in page
    names = {c.name for c in session.query(Customer).filter_by(shop_id=shop_a.shop.id)}
    assert "Cy" in names and "Bob" not in names and not any("da" in n for n in names)


def test_csv_that_the_csv_module_cannot_read_is_reported(owner_client, session, shop_a):
    before = session.query(Customer).count()
    huge = "x" * 200_000  # over the csv module's field limit
    response = import_csv(owner_client, f"name,phone\nAda,07911 200301\n{huge},07911 200302\n")
    assert response.status_code == 422
    assert "The file could not be read as CSV" in text(response)
    assert "nothing was imported" in text(response)
    assert session.query(Customer).count() == before


# ---------------------------------------------------------------- appointment dates


def new_appointment(client, world, starts_at: str):
    data = {
        "customer": world.customers[1].id,
        "service": world.service.id,
        "resource": world.chair.id,
        "starts_at": starts_at,
    }
    return post(client, "/admin/appointments/new/", data)


@pytest.mark.parametrize("starts_at", ["0001-01-01T10:00", "9999-12-31T23:30", "2031-06-01T10:00"])
def test_appointments_far_from_today_are_refused(owner_client, session, shop_a, starts_at):
    before = session.query(Appointment).count()
    response = new_appointment(owner_client, shop_a, starts_at)
    assert response.status_code == 200
    assert "Pick a start between" in text(response)
    assert session.query(Appointment).count() == before


def test_appointments_near_today_are_taken(owner_client, session, shop_a):
    # The clock stands at 12 Jan 2026: two years back and five ahead are allowed.
    assert new_appointment(owner_client, shop_a, "2024-02-01T10:00").status_code == 302
    assert new_appointment(owner_client, shop_a, "2030-12-01T10:00").status_code == 302


def test_editing_an_appointment_into_year_one_is_refused(owner_client, session, shop_a):
    booking = shop_a.booking
    data = {
        "customer": booking.customer_id,
        "service": booking.service_id,
        "resource": booking.resource_id,
        "starts_at": "0001-01-01T00:00",
    }
    response = post(owner_client, f"/admin/appointments/edit/?id={booking.id}", data)
    assert response.status_code == 200
    assert "Pick a start between" in text(response)
    session.expire_all()
    assert session.get(Appointment, booking.id).starts_at == booking.starts_at


@pytest.mark.parametrize("page", [-5, 2**31, 2**63 - 1, 10**20])
def test_list_pages_out_of_range_are_not_found(owner_client, page):
    assert owner_client.get(f"/admin/customers/?page={page}").status_code == 404
    assert owner_client.get("/admin/customers/?page=3").status_code == 200  # past the end: empty
