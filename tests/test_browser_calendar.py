"""The calendar in a real browser: Debian's Chromium (driven by Playwright) against the app
served by gunicorn, with an RQ worker, real PostgreSQL and Redis. Screenshots of the day and
the week, at desktop width and on a 390 px phone, go to ``test-artifacts/calendar/``.

Staff log in and land on the calendar; it shows a day of bookings in every status, slot
openings (offering, filled, expired), busy time (manual, synced, the whole shop) and the
week; clicking a booking opens its page.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from recovery.db import utcnow
from recovery.models import AppointmentStatus, BusyBlock, OpeningStatus
from tests import factories as f
from tests.conftest import REDIS_URL
from tests.processes import (
    BIN,
    ROOT,
    answers,
    free_port,
    process_env,
    running,
    wait_until,
    worker_cmd,
)
from tests.test_browser_recovery import CHROMIUM, CHROMIUM_ARGS
from tests.test_calendar import connection_id

SHOTS = ROOT / "test-artifacts" / "calendar"
PASSWORD = "calendar-pw-123"
ZONE = ZoneInfo("Europe/London")
DESKTOP = {"viewport": {"width": 1280, "height": 900}}
PHONE = {
    "viewport": {"width": 390, "height": 844},
    "device_scale_factor": 2,
    "is_mobile": True,
    "has_touch": True,
}


def at(day: date, hh: int, mm: int = 0) -> datetime:
    """A wall-clock time of the shop on ``day``, as UTC."""
    return datetime.combine(day, time(hh, mm), tzinfo=ZONE).astimezone(UTC)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def salon(committed):
    """A salon's week, with today full of everything the calendar shows (committed: the
    server is another process)."""
    s = committed
    today = utcnow().astimezone(ZONE).date()
    shop = f.shop(s, name="Calendar Cuts", timezone="Europe/London")
    staff = f.staff(s, shop, email="kim@cuts.example", password=PASSWORD)
    alex, sam, jo = (f.resource(s, shop, name=n) for n in ("Alex", "Sam", "Jo"))
    fade = f.service(s, shop, name="Skin fade", duration_minutes=30)
    colour = f.service(s, shop, name="Colour", duration_minutes=90)
    trim = f.service(s, shop, name="Beard trim", duration_minutes=15)
    names = ["Amira Khan", "Ben Ortiz", "Chloe Park", "Dev Patel", "Ella Moss", "Finn Hale"]
    people = [f.customer(s, shop, name=n) for n in names]
    yasmin = f.customer(s, shop, name="Yasmin Begum")

    def book(resource, person, service, starts_at, status=AppointmentStatus.BOOKED, **kw):
        return f.appointment(s, resource, person, service, starts_at=starts_at, status=status, **kw)

    def opening(resource, service, starts_at, status, **kw):
        source = book(
            resource,
            people[5],
            service,
            starts_at,
            AppointmentStatus.CANCELLED,
            cancelled_at=utcnow() - timedelta(hours=2),
        )
        return f.opening(s, source, status=status, **kw)

    done = AppointmentStatus.COMPLETED
    unpaid = AppointmentStatus.PENDING_PAYMENT
    first = book(alex, people[0], fade, at(today, 9))
    book(alex, people[1], colour, at(today, 10), unpaid)
    book(alex, people[2], fade, at(today, 14))
    book(sam, people[3], trim, at(today, 9), done)
    book(sam, people[4], fade, at(today, 9, 30), done)
    offering = opening(sam, fade, at(today, 11), OpeningStatus.OPEN)
    f.offer(s, offering, yasmin, expires_at=utcnow() + timedelta(minutes=15))
    filled = opening(sam, colour, at(today, 13), OpeningStatus.FILLED)
    book(sam, people[0], colour, at(today, 13), source_slot_opening_id=filled.id)
    opening(
        jo,
        fade,
        at(today, 10, 30),
        OpeningStatus.EXPIRED,
        outcome_note="No eligible customer before the lead time",
    )
    book(jo, people[2], trim, at(today, 16))
    book(jo, people[3], fade, at(today, 17, 15), unpaid)
    s.add_all(
        [
            BusyBlock(
                shop_id=shop.id,
                resource_id=alex.id,
                starts_at=at(today, 12),
                ends_at=at(today, 13),
                reason="Lunch",
            ),
            BusyBlock(
                shop_id=shop.id,
                resource_id=sam.id,
                starts_at=at(today, 15, 30),
                ends_at=at(today, 17),
                reason="Dentist",
                source="google",
                connection_id=connection_id(s, sam, "google"),
                external_id="evt-dentist",
            ),
            BusyBlock(
                shop_id=shop.id,
                resource_id=None,
                starts_at=at(today, 18),
                ends_at=at(today, 19),
                reason="Team meeting",
            ),
        ]
    )
    # The rest of the week: a few bookings a day on each chair.
    monday = today - timedelta(days=today.weekday())
    for n in range(7):
        day = monday + timedelta(days=n)
        if day == today:
            continue
        for i, resource in enumerate((alex, sam, jo)):
            book(resource, people[(n + i) % 5], fade, at(day, 9 + i))
            book(resource, people[(n + i + 1) % 5], trim, at(day, 14, 15 * i), done)
    s.commit()
    return {"staff": staff, "today": today, "first": first, "customer": people[0]}


@pytest.fixture
def server(app, database_url, redis_conn, salon) -> Iterator[str]:
    port = free_port()
    env = process_env(database_url, REDIS_URL)
    web = [
        str(BIN / "gunicorn"),
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        "1",
        "--threads",
        "4",
        "app:create_app()",
    ]
    base = f"http://127.0.0.1:{port}"
    with running(web, env) as gunicorn, running(worker_cmd(REDIS_URL), env) as worker:
        wait_until(
            lambda: answers(f"http://127.0.0.1:{port}/healthz"), 30, "gunicorn /healthz", gunicorn
        )
        yield base
        assert "Traceback" not in gunicorn.output(), gunicorn.output()
        assert "Traceback" not in worker.output(), worker.output()


class Visit:
    """One browser context on the app: nothing fetched from elsewhere, no failed request."""

    def __init__(self, browser: Browser, base: str, **options) -> None:
        self.base = base
        self.offsite: list[str] = []
        self.failed: list[str] = []
        self.context = browser.new_context(**options)
        self.context.route("**/*", self._local_only)
        self.page: Page = self.context.new_page()
        self.page.set_default_timeout(15_000)
        self.page.on(
            "response",
            lambda r: self.failed.append(f"{r.status} {r.url}") if r.status >= 400 else None,
        )
        SHOTS.mkdir(parents=True, exist_ok=True)

    def _local_only(self, route) -> None:
        if route.request.url.startswith(self.base):
            route.continue_()
        else:
            self.offsite.append(route.request.url)
            route.abort()

    def go(self, path: str) -> None:
        self.page.goto(self.base + path)

    def shot(self, name: str) -> None:
        self.page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)

    def log_in(self, email: str) -> None:
        self.go("/login")
        self.page.fill("#email", email)
        self.page.fill("#password", PASSWORD)
        self.page.click("button[type=submit]")
        # Staff land on the calendar.
        expect(self.page).to_have_url(f"{self.base}/admin/calendar/")
        expect(self.page.get_by_test_id("calendar-title")).to_be_visible()

    def close(self) -> None:
        self.context.close()
        assert self.offsite == []
        assert self.failed == []


def check_day(page: Page, salon) -> None:
    day = page.get_by_test_id("calendar-day")
    expect(day.locator("[data-column]")).to_have_count(4)  # the whole shop and three chairs
    expect(day.locator("[data-column=shop]")).to_contain_text("Team meeting")
    for status in ("booked", "pending_payment", "completed"):
        expect(day.locator(f'[data-kind=booking][data-status="{status}"]').first).to_be_visible()
    for status in ("open", "filled", "expired"):
        expect(day.locator(f'[data-kind=opening][data-status="{status}"]')).to_have_count(1)
    expect(day.locator('[data-kind=opening][data-status="open"]')).to_contain_text(
        "Offered to Yasmin Begum until"
    )
    expect(day.locator('[data-kind=block][data-status="manual"]')).to_have_count(2)
    expect(day.locator('[data-kind=block][data-status="google"]')).to_contain_text("Dentist")


# What reaches past the right edge of the screen, to say why a page is too wide (inside the
# day's scroller that is expected, so those are listed last).
STICKING_OUT = """width => [...document.querySelectorAll('body *')]
    .filter(e => e.getBoundingClientRect().right > width + 0.5)
    .sort((a, b) => !!a.closest('.cal-scroll') - !!b.closest('.cal-scroll'))
    .map(e => e.tagName + '.' + e.className + ' ' + Math.round(e.getBoundingClientRect().right))
    .slice(0, 10)"""


def fits_the_screen(page: Page) -> bool:
    width = page.viewport_size["width"]
    wide = page.evaluate("document.documentElement.scrollWidth")
    assert wide <= width, page.evaluate(STICKING_OUT, width)
    return True


def test_the_calendar_in_the_browser(browser, server, salon):
    today = salon["today"].isoformat()
    staff, first = salon["staff"], salon["first"]

    desk = Visit(browser, server, **DESKTOP)
    page = desk.page
    desk.log_in(staff.email)
    desk.shot("01-landing")

    desk.go(f"/admin/calendar/?view=day&date={today}")
    check_day(page, salon)
    # The stylesheet applies: items sit in the grid, booked ones blue.
    booked = page.locator(f"[data-kind=booking][data-id='{first.id}']")
    colour = booked.evaluate("e => getComputedStyle(e).backgroundColor")
    assert colour == "rgb(219, 233, 255)"
    desk.shot("02-day-desktop")

    page.click("[data-nav=week]")
    week = page.get_by_test_id("calendar-week")
    expect(week).to_be_visible()
    today_bookings = week.locator(f'.cal-wk-cell[data-day="{today}"] [data-kind=booking]')
    expect(today_bookings).to_have_count(8)  # the cancelled ones stay hidden
    expect(week.locator(".cal-wk-cell [data-kind=booking]")).to_have_count(8 + 6 * 6)
    desk.shot("03-week-desktop")

    # Clicking a booking opens its page.
    page.click("[data-nav=day]")
    page.locator(f"[data-kind=booking][data-id='{first.id}']").click()
    expect(page).to_have_url(f"{server}/admin/appointments/details/?id={first.id}")
    expect(page.locator("body")).to_contain_text(salon["customer"].name)
    desk.shot("04-booking-page")

    # The dashboard is one click away.
    page.locator("a.nav-link", has_text="Dashboard").click()
    expect(page.get_by_test_id("metrics")).to_be_visible()
    desk.close()

    phone = Visit(browser, server, **PHONE)
    page = phone.page
    phone.log_in(staff.email)
    phone.go(f"/admin/calendar/?view=day&date={today}")
    check_day(page, salon)
    phone.shot("05-day-phone")
    # Nothing but the day grid scrolls sideways; the page itself fits the phone.
    assert fits_the_screen(page)

    phone.go(f"/admin/calendar/?view=week&date={today}")
    expect(page.get_by_test_id("calendar-week")).to_be_visible()
    phone.shot("06-week-phone")
    assert fits_the_screen(page)
    link = page.locator(f"[data-kind=booking][data-id='{first.id}']")
    link.scroll_into_view_if_needed()
    link.tap()
    expect(page).to_have_url(f"{server}/admin/appointments/details/?id={first.id}")
    phone.shot("07-booking-page-phone")
    phone.close()
