"""The admin's busy time: manual blocks in the shop's zone, synced ones read-only, a
confirmation step over bookings, openings withdrawn, and bad input refused (4xx, no change)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from admin.blocks import BusyBlockView
from recovery.messaging.outbox import Purpose
from recovery.models import (
    Appointment,
    BusyBlock,
    Message,
    OfferStatus,
    OpeningStatus,
    SlotOffer,
    SlotOpening,
)
from tests import factories as f
from tests.admin_support import *  # noqa: F403 (the shared fixtures)
from tests.admin_support import act, post

TOO_BIG = 2**31


def text(response) -> str:
    return response.get_data(as_text=True)


def blocks_of(session, world) -> list[BusyBlock]:
    session.expire_all()
    return list(
        session.scalars(
            select(BusyBlock).where(BusyBlock.shop_id == world.shop.id).order_by(BusyBlock.id)
        )
    )


def local(value: datetime) -> str:
    """A UTC time as staff type it (the shops are in London, on GMT in January)."""
    return f"{value:%Y-%m-%dT%H:%M}"


def form(world, starts_at: datetime, ends_at: datetime, resource="chair", **extra) -> dict:
    resource_id = world.chair.id if resource == "chair" else resource
    return {
        "resource": "" if resource_id is None else str(resource_id),
        "starts_at": local(starts_at),
        "ends_at": local(ends_at),
        "reason": "Training day",
        **extra,
    }


def new_block(client, data):
    return post(client, "/admin/blocks/new/", data)


@pytest.fixture
def free_time(shop_a):
    """A morning with no booking and no opening, a week ahead."""
    start = shop_a.booking.starts_at + timedelta(days=6)
    return start, start + timedelta(hours=3)


# ---------------------------------------------------------------- list and create


def test_the_page_opens_for_staff(clerk_client, session, shop_a):
    assert clerk_client.get("/admin/blocks/").status_code == 200
    assert clerk_client.get("/admin/blocks/new/").status_code == 200
    assert "Busy time" in text(clerk_client.get("/admin/"))


def test_create_a_block_in_shop_time(owner_client, session, shop_a):
    # 1 July is British Summer Time: 10:00 in London is 09:00 UTC.
    data = {
        "resource": str(shop_a.chair.id),
        "starts_at": "2026-07-01T10:00",
        "ends_at": "2026-07-01T12:30",
        "reason": "Training day",
    }
    response = new_block(owner_client, data)
    assert response.status_code == 302, text(response)
    [block] = blocks_of(session, shop_a)
    assert block.starts_at == datetime(2026, 7, 1, 9, 0, tzinfo=UTC)
    assert block.ends_at == datetime(2026, 7, 1, 11, 30, tzinfo=UTC)
    assert (block.resource_id, block.source, block.reason) == (
        shop_a.chair.id,
        "manual",
        "Training day",
    )
    assert block.created_by_id == shop_a.owner.id


def test_the_list_shows_upcoming_blocks_with_their_source(
    owner_client, session, shop_a, shop_b, clock
):
    now = clock.now
    whole = f.block(session, shop_a.shop, now + timedelta(days=8), now + timedelta(days=9))
    synced = f.block(
        session,
        shop_a.shop,
        now + timedelta(days=8),
        now + timedelta(days=8, hours=1),
        resource=shop_a.chair,
        source="google",
        reason="Dentist",
    )
    past = f.block(session, shop_a.shop, now - timedelta(days=3), now - timedelta(days=2))
    theirs = f.block(session, shop_b.shop, now + timedelta(days=8), now + timedelta(days=9))
    session.commit()
    page = text(owner_client.get("/admin/blocks/"))
    assert f"id={whole.id}" in page and f"id={synced.id}" in page
    assert f"id={past.id}" not in page and f"id={theirs.id}" not in page
    assert "Whole shop" in page and shop_a.chair.name in page
    assert 'data-source="google"' in page and "google (read-only)" in page
    assert 'data-source="manual"' in page
    assert f"edit/?id={whole.id}" in page and f"edit/?id={synced.id}" not in page
    assert (now + timedelta(days=8)).strftime("%a %d %b %Y, %H:%M") in page  # shop time
    everything = text(owner_client.get("/admin/blocks/?flt0_when_is=all"))
    assert f"id={past.id}" in everything and f"id={theirs.id}" not in everything


# ---------------------------------------------------------------- confirmation over bookings


def test_a_block_over_bookings_asks_for_a_confirmation_first(owner_client, session, shop_a):
    booking = shop_a.booking
    data = form(shop_a, booking.starts_at - timedelta(hours=1), booking.ends_at)
    response = new_block(owner_client, data)
    assert response.status_code == 200
    page = text(response)
    assert 'data-testid="block-clashes"' in page and f'data-clash="{booking.id}"' in page
    assert blocks_of(session, shop_a) == []
    # Ticking the box without the list shown (or for other bookings) is not enough.
    response = new_block(owner_client, {**data, "confirm": "y", "confirmed_ids": "1"})
    assert response.status_code == 200 and f'data-clash="{booking.id}"' in text(response)
    assert blocks_of(session, shop_a) == []
    # Submitted again without the box ticked: asked again.
    response = new_block(owner_client, {**data, "confirmed_ids": str(booking.id)})
    assert response.status_code == 200 and blocks_of(session, shop_a) == []
    response = new_block(owner_client, {**data, "confirm": "y", "confirmed_ids": str(booking.id)})
    assert response.status_code == 302
    assert len(blocks_of(session, shop_a)) == 1
    assert session.get(Appointment, booking.id).status == "booked"  # the booking stays


def test_a_block_over_an_open_opening_withdraws_it(owner_client, session, shop_a):
    opening, offer = shop_a.opening, shop_a.offer
    data = form(shop_a, opening.starts_at - timedelta(minutes=30), opening.ends_at)
    response = new_block(owner_client, data)
    assert response.status_code == 302, text(response)
    session.expire_all()
    opening = session.get(SlotOpening, opening.id)
    assert opening.status == OpeningStatus.EXPIRED and opening.outcome_note == "blocked"
    assert session.get(SlotOffer, offer.id).status == OfferStatus.EXPIRED
    message = session.scalar(
        select(Message).where(
            Message.purpose == Purpose.WITHDRAWN, Message.slot_offer_id == offer.id
        )
    )
    assert message.to_number == shop_a.offer.customer.phone
    assert "no longer available" in message.body
    followed = owner_client.get("/admin/blocks/")
    assert "1 open slot(s) in its time were withdrawn" in text(followed)


def test_an_appointment_in_blocked_time_is_refused_with_the_blocks_name(
    owner_client, session, shop_a, free_time
):
    block = f.block(session, shop_a.shop, *free_time, resource=shop_a.chair, reason="Deep clean")
    session.commit()
    before = session.scalar(select(func.count(Appointment.id)))
    data = {
        "customer": shop_a.customers[1].id,
        "service": shop_a.service.id,
        "resource": shop_a.chair.id,
        "starts_at": local(free_time[0] + timedelta(minutes=30)),
    }
    response = post(owner_client, "/admin/appointments/new/", data)
    assert response.status_code == 200
    assert "That time is blocked" in text(response)
    assert f"Deep clean (block #{block.id}" in text(response)
    assert session.scalar(select(func.count(Appointment.id))) == before


# ---------------------------------------------------------------- edit and delete


def test_edit_and_delete_a_manual_block(owner_client, session, shop_a, free_time):
    block = f.block(session, shop_a.shop, *free_time, resource=shop_a.chair)
    session.commit()
    url = f"/admin/blocks/edit/?id={block.id}"
    page = text(owner_client.get(url))
    assert local(free_time[0]) in page and "Training day" in page
    data = form(shop_a, free_time[0], free_time[1] + timedelta(hours=1), resource=None)
    assert post(owner_client, url, data).status_code == 302
    [saved] = blocks_of(session, shop_a)
    assert (saved.resource_id, saved.ends_at) == (None, free_time[1] + timedelta(hours=1))
    response = post(owner_client, "/admin/blocks/delete/", {"id": str(block.id)})
    assert response.status_code == 302
    assert blocks_of(session, shop_a) == []


def test_synced_blocks_are_read_only(owner_client, session, shop_a, free_time):
    synced = f.block(session, shop_a.shop, *free_time, source="ics", reason="Holiday")
    manual = f.block(session, shop_a.shop, free_time[1], free_time[1] + timedelta(hours=1))
    session.commit()
    url = f"/admin/blocks/edit/?id={synced.id}"
    response = owner_client.get(url, follow_redirects=True)
    assert "synced from a calendar and read-only" in text(response)
    data = form(shop_a, free_time[0], free_time[1] + timedelta(days=1))
    assert post(owner_client, url, data).status_code == 302
    response = post(owner_client, "/admin/blocks/delete/", {"id": str(synced.id)})
    assert response.status_code == 302
    response = act(owner_client, "blocks", "delete", synced.id, manual.id, follow_redirects=True)
    assert "Nothing was deleted" in text(response)
    left = blocks_of(session, shop_a)
    assert [b.id for b in left] == [synced.id, manual.id]
    assert left[0].ends_at == free_time[1] and left[0].resource_id is None
    # The manual one alone is deleted in bulk.
    act(owner_client, "blocks", "delete", manual.id)
    assert [b.id for b in blocks_of(session, shop_a)] == [synced.id]


# ---------------------------------------------------------------- scoping and bad input


def test_another_shops_blocks_are_not_found(owner_client, session, shop_a, shop_b, free_time):
    theirs = f.block(session, shop_b.shop, *free_time, resource=shop_b.chair)
    session.commit()
    for ident in (theirs.id, TOO_BIG, -1, "x"):
        assert owner_client.get(f"/admin/blocks/edit/?id={ident}").status_code == 404
        assert owner_client.get(f"/admin/blocks/details/?id={ident}").status_code == 404
        response = post(owner_client, f"/admin/blocks/edit/?id={ident}", form(shop_a, *free_time))
        assert response.status_code == 404
        assert post(owner_client, "/admin/blocks/delete/", {"id": str(ident)}).status_code == 404
    assert act(owner_client, "blocks", "delete", theirs.id).status_code == 404
    session.expire_all()
    kept = session.get(BusyBlock, theirs.id)
    assert (kept.resource_id, kept.starts_at) == (shop_b.chair.id, free_time[0])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"ends_at": "start"}, "The end must be after the start."),
        ({"ends_at": "before"}, "The end must be after the start."),
        ({"ends_at": "far"}, "A block can be at most two years long."),
        ({"resource": "theirs"}, "Not a valid choice"),
        ({"resource": str(TOO_BIG)}, "Not a valid choice"),
        ({"resource": "abc"}, "Not a valid choice"),
        ({"starts_at": "0001-01-01T00:00"}, "Pick a start between"),
        ({"starts_at": "9999-12-31T23:30"}, "Pick a start between"),
        ({"starts_at": "tomorrow"}, "Not a valid datetime value"),
        ({"ends_at": ""}, "This field is required"),
        ({"reason": "x" * 201}, "Field cannot be longer than 200 characters"),
    ],
)
def test_bad_input_is_refused_and_changes_nothing(
    owner_client, session, shop_a, shop_b, free_time, change, message
):
    start, end = free_time
    data = form(shop_a, start, end)
    values = {
        "start": local(start),
        "before": local(start - timedelta(hours=1)),
        "far": local(start + timedelta(days=2 * 365 + 2)),
        "theirs": str(shop_b.chair.id),
    }
    data.update({key: values.get(value, value) for key, value in change.items()})
    response = new_block(owner_client, data)
    assert response.status_code == 422
    assert message in text(response)
    assert blocks_of(session, shop_a) == [] and blocks_of(session, shop_b) == []


def test_overlapping_manual_blocks_are_refused_clearly(owner_client, session, shop_a, free_time):
    first = f.block(session, shop_a.shop, *free_time, resource=shop_a.chair)
    session.commit()
    later = (free_time[0] + timedelta(hours=1), free_time[1] + timedelta(hours=1))
    response = new_block(owner_client, form(shop_a, *later))
    assert response.status_code == 422
    assert f"It overlaps another manual block: Training day (block #{first.id}" in text(response)
    assert len(blocks_of(session, shop_a)) == 1
    # Editing one into another is refused the same way, and changes nothing.
    second = f.block(session, shop_a.shop, free_time[1], free_time[1] + timedelta(hours=1))
    session.commit()
    response = post(owner_client, f"/admin/blocks/edit/?id={second.id}", form(shop_a, *later))
    assert response.status_code == 422
    assert "It overlaps another manual block" in text(response)
    session.expire_all()
    kept = session.get(BusyBlock, second.id)
    assert (kept.resource_id, kept.starts_at) == (None, free_time[1])


def test_flask_admins_own_save_path_is_closed():
    assert BusyBlockView.create_view.__qualname__.startswith("BusyBlockView")
    assert BusyBlockView.edit_view.__qualname__.startswith("BusyBlockView")
