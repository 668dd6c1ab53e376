"""Every admin list, page, form and action is scoped to the staff member's shop.

A staff member of shop A gets 404 for any record of shop B, on every endpoint of every
view and through every action, and nothing of shop B changes.
"""

from __future__ import annotations

import pytest

from recovery.models import (
    Appointment,
    Customer,
    Payment,
    Refund,
    SlotOffer,
    SlotOpening,
)
from tests.admin_support import *  # noqa: F403 (the shared fixtures)
from tests.admin_support import act, post

# view endpoint -> the World attribute holding that view's row
VIEWS = {
    "openings": "opening",
    "offers": "offer",
    "appointments": "booking",
    "customers": "customers",
    "messages": "message",
    "payments": "payment",
    "services": "service",
    "resources": "chair",
    "shop_settings": "shop",
    "staff": "clerk",
}

ACTIONS = [
    ("openings", "retrigger", "opening"),
    ("openings", "expire", "opening"),
    ("offers", "expire", "offer"),
    ("appointments", "cancel", "booking"),
    ("appointments", "refund", "booking"),
    ("payments", "mark_succeeded", "pending"),
    ("payments", "mark_failed", "pending"),
]


def row_id(world, attr: str) -> int:
    row = getattr(world, attr)
    return (row[0] if isinstance(row, list) else row).id


@pytest.mark.parametrize("endpoint", VIEWS)
def test_another_shops_record_is_not_found_on_every_page(owner_client, shop_a, shop_b, endpoint):
    ident = row_id(shop_b, VIEWS[endpoint])
    for page in ("details", "edit"):
        response = owner_client.get(f"/admin/{endpoint}/{page}/?id={ident}")
        assert response.status_code == 404, (endpoint, page)
    response = post(owner_client, f"/admin/{endpoint}/edit/?id={ident}", {"name": "Taken over"})
    assert response.status_code == 404
    response = post(owner_client, f"/admin/{endpoint}/delete/", {"id": str(ident)})
    assert response.status_code == 404
    # The same pages for the staff's own row work.
    own = row_id(shop_a, VIEWS[endpoint])
    assert owner_client.get(f"/admin/{endpoint}/details/?id={own}").status_code in (200, 302)


@pytest.mark.parametrize("endpoint", [e for e in VIEWS if e != "shop_settings"])
def test_lists_show_only_the_staffs_shop(owner_client, shop_a, shop_b, endpoint):
    page = owner_client.get(f"/admin/{endpoint}/").get_data(as_text=True)
    assert "Shop B" not in page
    own = row_id(shop_a, VIEWS[endpoint])
    assert f'value="{own}"' in page or f"id={own}" in page


@pytest.mark.parametrize(("endpoint", "action", "attr"), ACTIONS)
def test_actions_on_another_shops_record_are_not_found(
    owner_client, session, shop_a, shop_b, endpoint, action, attr
):
    ident = row_id(shop_b, attr)
    before = snapshot(session, shop_b)
    response = act(owner_client, endpoint, action, ident)
    assert response.status_code == 404
    # Mixed with an own row, the whole request is refused (nothing half-done).
    response = act(owner_client, endpoint, action, row_id(shop_a, attr), ident)
    assert response.status_code == 404
    session.expire_all()
    assert snapshot(session, shop_b) == before


def test_refund_page_of_another_shop_is_not_found(owner_client, session, shop_b):
    url = f"/admin/appointments/refund/?id={shop_b.booking.id}"
    assert owner_client.get(url).status_code == 404
    response = post(
        owner_client,
        url,
        {"payment_id": shop_b.payment.id, "amount": "5", "reason": "x", "form_token": "k1"},
    )
    assert response.status_code == 404
    assert session.query(Refund).count() == 0


def test_create_forces_the_staffs_shop(owner_client, session, shop_a, shop_b):
    response = post(
        owner_client,
        "/admin/customers/new/",
        {"name": "New Person", "phone": "07911 200555", "shop_id": shop_b.shop.id},
    )
    assert response.status_code == 302
    created = session.query(Customer).filter_by(name="New Person").one()
    assert created.shop_id == shop_a.shop.id
    assert created.phone == "+447911200555"


def test_edit_never_moves_a_row_to_another_shop(owner_client, session, shop_a, shop_b):
    customer = shop_a.customers[0]
    response = post(
        owner_client,
        f"/admin/customers/edit/?id={customer.id}",
        {"name": "Renamed", "phone": customer.phone, "shop_id": shop_b.shop.id},
    )
    assert response.status_code == 302
    session.expire_all()
    assert session.get(Customer, customer.id).shop_id == shop_a.shop.id
    assert session.get(Customer, customer.id).name == "Renamed"


def test_select_fields_offer_only_the_shops_rows(owner_client, session, shop_a, shop_b):
    form = owner_client.get("/admin/appointments/new/").get_data(as_text=True)
    assert shop_a.customers[0].name in form and shop_a.chair.name in form
    assert "Shop B" not in form
    assert shop_b.chair.name not in form and shop_b.service.name not in form
    # A forged id of another shop's customer is not a valid choice.
    before = session.query(Appointment).count()
    response = post(
        owner_client,
        "/admin/appointments/new/",
        {
            "customer": shop_b.customers[0].id,
            "service": shop_a.service.id,
            "resource": shop_a.chair.id,
            "starts_at": "2026-01-20T10:00",
        },
    )
    assert response.status_code == 200
    assert "Not a valid choice" in response.get_data(as_text=True)
    assert session.query(Appointment).count() == before


def snapshot(session, world) -> dict:
    """The states an action could change in one shop."""
    shop_id = world.shop.id
    openings = session.query(SlotOpening).filter_by(shop_id=shop_id).order_by(SlotOpening.id)
    offers = session.query(SlotOffer).join(SlotOpening).filter(SlotOpening.shop_id == shop_id)
    appts = session.query(Appointment).filter_by(shop_id=shop_id).order_by(Appointment.id)
    payments = session.query(Payment).join(Appointment).filter(Appointment.shop_id == shop_id)
    return {
        "openings": [(o.id, o.status) for o in openings],
        "offers": sorted((o.id, o.status, o.expires_at) for o in offers),
        "appointments": [(a.id, a.status) for a in appts],
        "payments": sorted((p.id, p.status, p.refunded_minor) for p in payments),
    }
