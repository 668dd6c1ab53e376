"""The admin calendar: day and week pages, their contents and colours, scoping to the staff's
shop, refusals of bad query strings, days on which the clocks change, and a bounded number
of queries however full the week is."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import event

from admin.calendar import DASH, MAX_LANES, MAX_ROWS
from recovery import models
from recovery.db import db
from recovery.models import AppointmentStatus, BusyBlock, OpeningStatus
from tests import factories as f
from tests.admin_support import *  # noqa: F403 (the shared fixtures)
from tests.admin_support import PASSWORD, forget_cached_request_state, login

URL = "/admin/calendar/"
ROOT = Path(__file__).resolve().parent.parent


def text(response) -> str:
    return response.get_data(as_text=True)


def connection_id(session, resource, provider: str) -> int:
    """The id of a calendar connection of ``resource``, for a synced block to come from."""
    model = getattr(models, "CalendarConnection", None)
    if model is None:  # a schema where the column refers to nothing
        return 1
    row = model(shop_id=resource.shop_id, resource_id=resource.id, provider=provider, secret=b"x")
    session.add(row)
    session.flush()
    return row.id


def block(session, shop, starts_at, ends_at, resource=None, source="manual", reason="Lunch"):
    synced = source != "manual"
    row = BusyBlock(
        shop_id=shop.id,
        resource_id=resource.id if resource is not None else None,
        starts_at=starts_at,
        ends_at=ends_at,
        source=source,
        reason=reason,
        connection_id=connection_id(session, resource, source) if synced else None,
        external_id=f"event-{starts_at:%Y%m%d%H%M}" if synced else None,
    )
    session.add(row)
    session.flush()
    return row


def items(page: str, kind: str) -> dict[int, str]:
    """The calendar's items of one kind: id -> the item's opening tag."""
    found = {}
    for tag in re.findall(r"<a class=\"cal-item[^>]*>", page):
        if f'data-kind="{kind}"' in tag:
            found[int(re.search(r'data-id="(\d+)"', tag).group(1))] = tag
    return found


def column(page: str, key) -> str:
    """The HTML of one day column (a resource's id, or ``shop``)."""
    start = page.index(f'data-column="{key}"')
    end = page.find("<section", start)
    return page[start : end if end != -1 else len(page)]


# ---------------------------------------------------------------- landing and access


def test_staff_land_on_the_calendar_after_login(app, shop_a):
    client = app.test_client()
    response = login(client, shop_a.clerk.email)
    assert response.status_code == 302 and response.location.endswith(URL)
    page = text(client.get(URL))
    assert "Monday 12 January 2026" in page  # today, in the shop's zone (the test clock)
    # The dashboard stays one click away.
    assert re.search(r'href="/admin/">\s*Dashboard</a>', page)


def test_the_calendar_needs_a_login(client, session):
    response = client.get(URL)
    assert response.status_code == 302 and "/login?next=" in response.location


# ---------------------------------------------------------------- contents


def test_the_week_shows_bookings_openings_and_offers(owner_client, shop_a, shop_b):
    page = text(owner_client.get(f"{URL}?view=week&date=2026-01-14"))  # a Wednesday
    assert f"12 {DASH} 18 Jan 2026" in page
    bookings = items(page, "booking")
    # Booked tomorrow and held (pending payment) in three days; the cancelled one is hidden.
    assert set(bookings) == {shop_a.booking.id, shop_a.held.id}
    assert 'data-status="booked"' in bookings[shop_a.booking.id]
    assert "cal-booking-booked" in bookings[shop_a.booking.id]
    assert "cal-booking-pending_payment" in bookings[shop_a.held.id]
    assert f'href="/admin/appointments/details/?id={shop_a.booking.id}"' in page
    openings = items(page, "opening")
    assert set(openings) == {shop_a.opening.id}
    assert f'href="/admin/openings/details/?id={shop_a.opening.id}"' in page
    # The live offer: to whom, until when (shop time; it runs out on Monday).
    assert "Offered to Shop A C2 until Mon 12 Jan 09:15" in page
    assert "Shop A C0" in page and "Pending payment" in page
    assert "Shop B" not in page  # nothing of the other shop
    # A cell per day and resource; each day heads to its day view.
    assert len(re.findall(r"class=\"cal-wk-cell[ \"]", page)) == 7
    assert 'href="/admin/calendar/?view=day&amp;date=2026-01-13"' in page


def test_the_day_places_items_by_their_time(owner_client, shop_a):
    page = text(owner_client.get(f"{URL}?date=2026-01-13"))
    assert "Tuesday 13 January 2026" in page
    chair = column(page, shop_a.chair.id)
    tag = items(chair, "booking")[shop_a.booking.id]
    # 09:00-09:30 London (GMT): the day is drawn from 08:00, a row a quarter hour.
    assert "cal-r5 cal-s2" in tag
    assert f"09:00{DASH}09:30" in chair
    assert "cal-fill cal-s48" in chair  # 08:00-20:00
    hours = re.findall(r'cal-hour cal-r(\d+) cal-s\d+">([^<]+)<', page)
    assert hours[0] == ("1", "08:00") and hours[-1] == ("45", "19:00") and len(hours) == 12


def test_the_day_widens_to_items_outside_opening_hours(owner_client, session, shop_a):
    early = datetime(2026, 1, 13, 6, 10, tzinfo=UTC)
    f.appointment(session, shop_a.chair, shop_a.customers[1], shop_a.service, starts_at=early)
    session.commit()
    page = text(owner_client.get(f"{URL}?date=2026-01-13"))
    assert f"06:00{DASH}20:00" in page
    assert "cal-r1 cal-s3" in page  # 06:10-06:40 covers the 06:00, 06:15 and 06:30 rows


def test_filled_openings_and_their_booking_sit_side_by_side(owner_client, session, shop_a):
    shop_a.opening.status = OpeningStatus.FILLED
    shop_a.offer.status = "accepted"
    won = f.appointment(
        session,
        shop_a.chair,
        shop_a.customers[2],
        shop_a.service,
        starts_at=shop_a.opening.starts_at,
        source_slot_opening_id=shop_a.opening.id,
    )
    session.commit()
    page = text(owner_client.get(f"{URL}?date=2026-01-14"))
    chair = column(page, shop_a.chair.id)
    assert "cal-body cal-k2" in chair
    lanes = {
        re.search(r"cal-l(\d) cal-w(\d)", tag).groups()
        for tag in [items(chair, "booking")[won.id], items(chair, "opening")[shop_a.opening.id]]
    }
    assert lanes == {("1", "1"), ("2", "1")}
    assert "cal-opening-filled" in chair and "Filled slot" in chair


def test_busy_blocks_manual_and_synced_told_apart(owner_client, session, shop_a):
    lunch = block(
        session,
        shop_a.shop,
        datetime(2026, 1, 13, 12, 0, tzinfo=UTC),
        datetime(2026, 1, 13, 13, 0, tzinfo=UTC),
        resource=shop_a.chair,
    )
    dentist = block(
        session,
        shop_a.shop,
        datetime(2026, 1, 13, 15, 0, tzinfo=UTC),
        datetime(2026, 1, 13, 16, 0, tzinfo=UTC),
        resource=shop_a.chair,
        source="google",
        reason="Dentist",
    )
    closed = block(
        session,
        shop_a.shop,
        datetime(2026, 1, 13, 16, 0, tzinfo=UTC),
        datetime(2026, 1, 14, 10, 0, tzinfo=UTC),
        reason="Staff party",
    )
    session.commit()
    page = text(owner_client.get(f"{URL}?date=2026-01-13"))
    blocks = items(page, "block")
    assert "cal-block-manual" in blocks[lunch.id] and "cal-block-synced" in blocks[dentist.id]
    assert "Busy (manual)" in page and "Busy (Google Calendar)" in page
    # Shop-wide blocks get their own lane; each block links to its page in the admin
    # (synced ones are read-only there, so to their details).
    assert closed.id in items(column(page, "shop"), "block")
    assert {lunch.id, dentist.id} <= set(items(column(page, shop_a.chair.id), "block"))
    assert re.search(rf'href="/admin/[a-z_]+/edit/\?id={lunch.id}"', page)
    assert re.search(rf'href="/admin/[a-z_]+/details/\?id={dentist.id}"', page)
    assert "from 16:00" in page
    next_day = text(owner_client.get(f"{URL}?date=2026-01-14"))
    assert "until 10:00" in next_day and "Whole shop" in next_day
    week = text(owner_client.get(f"{URL}?view=week&date=2026-01-13"))
    assert week.count(f'data-kind="block" data-id="{closed.id}"') == 2  # Tuesday and Wednesday


def test_one_resource_alone(owner_client, session, shop_a):
    other = f.resource(session, shop_a.shop, name="Room 2")
    session.commit()
    everyone = text(owner_client.get(f"{URL}?date=2026-01-13"))
    assert f'data-column="{other.id}"' in everyone
    alone = text(owner_client.get(f"{URL}?date=2026-01-13&resource={shop_a.chair.id}"))
    assert f'data-column="{other.id}"' not in alone
    assert f'data-column="{shop_a.chair.id}"' in alone
    # Navigation keeps the filter.
    assert f"date=2026-01-14&amp;resource={shop_a.chair.id}" in alone


def test_inactive_resources_show_only_with_items(owner_client, session, shop_a):
    idle = f.resource(session, shop_a.shop, name="Old chair", active=False)
    session.commit()
    assert f'data-column="{idle.id}"' not in text(owner_client.get(f"{URL}?date=2026-01-13"))
    shop_a.chair.active = False
    session.commit()
    assert f'data-column="{shop_a.chair.id}"' in text(owner_client.get(f"{URL}?date=2026-01-13"))


def test_prev_next_and_today(owner_client, shop_a):
    page = text(owner_client.get(f"{URL}?view=week&date=2026-01-14"))
    assert 'href="/admin/calendar/?view=week&amp;date=2026-01-07" data-nav="prev"' in page
    assert 'href="/admin/calendar/?view=week&amp;date=2026-01-21" data-nav="next"' in page
    assert 'href="/admin/calendar/?view=week&amp;date=2026-01-12" data-nav="today"' in page
    day = text(owner_client.get(f"{URL}?date=2026-01-01"))
    assert 'date=2025-12-31" data-nav="prev"' in day


def test_an_empty_shop_says_what_to_do(app, session, clock):
    shop = f.shop(session, name="Empty")
    staff = f.staff(session, shop, password=PASSWORD)
    session.commit()
    client = app.test_client()
    login(client, staff.email)
    for view in ("day", "week"):
        response = client.get(f"{URL}?view={view}")
        assert response.status_code == 200
        assert "no resources yet" in text(response)


# ---------------------------------------------------------------- scoping and refusals


def test_another_shops_resource_is_not_found(owner_client, shop_b):
    response = owner_client.get(f"{URL}?resource={shop_b.chair.id}")
    assert response.status_code == 404
    assert "Shop B" not in text(response) and shop_b.chair.name not in text(response)


def test_another_shops_items_never_appear(app, session, shop_a, shop_b):
    block(
        session,
        shop_b.shop,
        datetime(2026, 1, 13, 0, 0, tzinfo=UTC),
        datetime(2026, 1, 20, 0, 0, tzinfo=UTC),
        reason="B is closed",
    )
    session.commit()
    client = app.test_client()
    login(client, shop_b.owner.email)
    b_week = text(client.get(f"{URL}?view=week&date=2026-01-14"))
    assert set(items(b_week, "booking")) == {shop_b.booking.id, shop_b.held.id}
    assert set(items(b_week, "opening")) == {shop_b.opening.id}
    a_client = app.test_client()
    login(a_client, shop_a.owner.email)
    for view in ("day", "week"):
        page = text(a_client.get(f"{URL}?view={view}&date=2026-01-14"))
        assert "B is closed" not in page and "Shop B" not in page
        assert not set(items(page, "booking")) & {shop_b.booking.id, shop_b.held.id}
        assert shop_b.opening.id not in items(page, "opening")
        assert f'value="{shop_b.chair.id}"' not in page


@pytest.mark.parametrize(
    "query",
    [
        "view=month",
        "view=DAY",
        "date=2026-13-01",
        "date=2026-02-30",
        "date=12/01/2026",
        "date=20260112",
        "date=0001-01-01",
        "date=9999-12-31",
        "date=%EF%BC%92026-01-01",  # a full-width digit
        "resource=abc",
        "resource=-1",
        "resource=0",
        "resource=99999999999",
        "resource=2147483648",
        "resource=1.5",
    ],
)
def test_bad_query_strings_are_a_plain_400(owner_client, query):
    response = owner_client.get(f"{URL}?{query}")
    assert response.status_code == 400
    assert response.content_type.startswith("text/plain")
    assert "<" not in text(response) and text(response)


def test_a_missing_resource_is_not_found(owner_client):
    assert owner_client.get(f"{URL}?resource=2147483647").status_code == 404


def test_empty_arguments_mean_the_defaults(owner_client):
    response = owner_client.get(f"{URL}?view=&date=&resource=")
    assert response.status_code == 200
    assert "Monday 12 January 2026" in text(response)


# ---------------------------------------------------------------- clocks changing


def test_the_spring_day_has_23_hours(owner_client, session, shop_a):
    # 29 March 2026, London: 01:00 GMT becomes 02:00 BST.
    night = datetime(2026, 3, 29, 0, 30, tzinfo=UTC)  # 00:30 GMT
    late = f.appointment(
        session,
        shop_a.chair,
        shop_a.customers[1],
        shop_a.service,
        starts_at=night,
        ends_at=night + timedelta(hours=1),  # 02:30 BST
    )
    session.commit()
    page = text(owner_client.get(f"{URL}?date=2026-03-29"))
    tag = items(page, "booking")[late.id]
    assert "cal-r3 cal-s4" in tag  # one real hour is four rows, from 00:30
    assert f"00:30{DASH}02:30" in page
    labels = [label for _, label in re.findall(r'cal-hour cal-r(\d+) cal-s\d+">([^<]+)<', page)]
    assert labels[:3] == ["00:00", "02:00 BST", "03:00"]  # no 01:00 that day
    assert "cal-fill cal-s76" in page  # 00:00 GMT to 20:00 BST: 19 real hours
    week = text(owner_client.get(f"{URL}?view=week&date=2026-03-29"))
    assert late.id in items(week, "booking")


def test_the_autumn_day_has_25_hours(owner_client, session, shop_a):
    # 25 October 2026, London: 02:00 BST becomes 01:00 GMT, so 01:00-02:00 happens twice.
    day_start = datetime(2026, 10, 24, 23, 0, tzinfo=UTC)  # local midnight (BST)
    closed = block(
        session, shop_a.shop, day_start, day_start + timedelta(hours=25), reason="Clocks"
    )
    second_one = datetime(2026, 10, 25, 1, 0, tzinfo=UTC)  # 01:00 GMT, the second 01:00
    booking = f.appointment(
        session, shop_a.chair, shop_a.customers[1], shop_a.service, starts_at=second_one
    )
    session.commit()
    page = text(owner_client.get(f"{URL}?date=2026-10-25"))
    assert "cal-fill cal-s100" in page  # 25 hours of quarter hours
    assert 'title="All day Clocks' in items(column(page, "shop"), "block")[closed.id]
    labels = [label for _, label in re.findall(r'cal-hour cal-r(\d+) cal-s\d+">([^<]+)<', page)]
    assert labels[:4] == ["00:00", "01:00", "01:00 GMT", "02:00"]
    assert len(labels) == 25
    # The booking at the second 01:00 sits on its own rows: 2 h 00 after midnight.
    assert "cal-r9 cal-s2" in items(page, "booking")[booking.id]


# ---------------------------------------------------------------- cost and markup


def test_queries_do_not_grow_with_the_number_of_items(app, owner_client, session, shop_a):
    def queries_for_week() -> int:
        statements: list[str] = []

        def before(conn, cursor, statement, *args):
            if statement.lstrip().upper().startswith("SELECT"):  # not the test's savepoints
                statements.append(statement)

        forget_cached_request_state()  # each request loads the staff and the shop afresh
        session.expire_all()
        engine = db.engine
        event.listen(engine, "before_cursor_execute", before)
        try:
            assert owner_client.get(f"{URL}?view=week&date=2026-01-14").status_code == 200
        finally:
            event.remove(engine, "before_cursor_execute", before)
        return len(statements)

    few = queries_for_week()
    assert few <= 6  # staff, shop, resources, then one per kind of item
    start = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
    for n in range(12):
        person = f.customer(session, shop_a.shop)
        status = [AppointmentStatus.BOOKED, AppointmentStatus.COMPLETED][n % 2]
        f.appointment(
            session,
            shop_a.chair,
            person,
            shop_a.service,
            starts_at=start + timedelta(minutes=30 * n),
            status=status,
        )
    session.commit()
    assert queries_for_week() == few


def test_no_inline_script_style_or_handlers(owner_client, shop_a):
    for view in ("day", "week"):
        page = text(owner_client.get(f"{URL}?view={view}&date=2026-01-13"))
        body = page[page.index('data-testid="calendar-toolbar"') : page.index("Times in")]
        assert "<script" not in body
        assert " style=" not in body and "<style" not in body
        assert not re.search(r"\son[a-z]+=", body)


def test_the_stylesheet_places_every_row_and_lane(owner_client):
    response = owner_client.get("/admin/calendar/static/calendar.css")
    assert response.status_code == 200 and response.content_type.startswith("text/css")
    css = text(response)
    response.close()
    for n in range(1, MAX_ROWS + 1):
        assert f".cal-r{n} {{" in css and f".cal-s{n} {{" in css
    for n in range(1, MAX_LANES + 1):
        assert f".cal-l{n} {{" in css and f".cal-w{n} {{" in css and f".cal-k{n} {{" in css
    assert (ROOT / "admin" / "static" / "calendar.css").read_text() == css
