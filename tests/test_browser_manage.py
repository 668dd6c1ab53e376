"""The customer's manage page in a real browser: Chromium (Debian's, driven by Playwright)
on a 390 px wide phone screen, against the app served by gunicorn with an RQ worker, real
PostgreSQL and Redis. Screenshots of each step go to ``test-artifacts/manage/``.

The customer opens the link from their text, sees what cancelling refunds, cancels,
confirms, and sees the cancelled page; the slot goes back to the recovery loop.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from recovery.db import utcnow
from recovery.models import Appointment, Message, Refund, SlotOpening
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

SHOTS = ROOT / "test-artifacts" / "manage"
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def booking(committed) -> Appointment:
    """A paid (£20) booking in two days, and a customer to offer the slot to (committed:
    the server and the worker are other processes)."""
    now = utcnow()
    shop = f.shop(committed, name="Phone Street Barbers", contact_phone="+442071234567")
    chair = f.resource(committed, shop, name="Chair 1")
    service = f.service(committed, shop, name="Skin fade and beard trim")
    carl = f.customer(committed, shop, name="Cancelling Carl")
    appt = f.appointment(
        committed, chair, carl, service, starts_at=now + timedelta(days=2), paid=True
    )
    f.customer(committed, shop, name="Yes Yasmin", last_settled_at=now - timedelta(days=3))
    committed.commit()
    return appt


@pytest.fixture
def server(app, database_url, redis_conn, booking) -> Iterator[str]:
    port = free_port()
    env = process_env(database_url, REDIS_URL)
    web = [str(BIN / "gunicorn"), "--bind", f"127.0.0.1:{port}", "--workers", "1"]
    web += ["--threads", "4", "app:create_app()"]
    with running(web, env) as gunicorn, running(worker_cmd(REDIS_URL), env) as worker:
        wait_until(
            lambda: answers(f"http://127.0.0.1:{port}/healthz"), 30, "gunicorn /healthz", gunicorn
        )
        yield f"http://127.0.0.1:{port}"
        assert "Traceback" not in gunicorn.output(), gunicorn.output()
        assert "Traceback" not in worker.output(), worker.output()


def shot(page: Page, n: int, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{n:02d}-{name}.png"), full_page=True)


def fits_the_screen(page: Page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def test_customer_cancels_from_the_manage_link_on_a_phone(browser, server, booking, committed):
    context = browser.new_context(viewport=PHONE, device_scale_factor=2, is_mobile=True)
    offsite: list[str] = []

    def local_only(route) -> None:
        # Works offline: nothing may be fetched from anywhere but the app.
        if route.request.url.startswith(server):
            route.continue_()
        else:
            offsite.append(route.request.url)
            route.abort()

    context.route("**/*", local_only)
    page = context.new_page()
    page.set_default_timeout(15_000)
    problems: list[str] = []  # console errors, such as a CSP violation
    page.on("console", lambda m: m.type == "error" and problems.append(m.text))
    page.on("dialog", lambda d: problems.append(f"unexpected dialog: {d.message}"))

    # The link from the confirmation text.
    response = page.goto(f"{server}/b/{booking.manage_token}")
    assert response.status == 200
    assert response.headers["cache-control"] == "no-store"
    expect(page.locator("h1")).to_have_text("Phone Street Barbers")
    expect(page.locator("#paid")).to_have_text("£20")
    expect(page.locator("#refund-amount")).to_have_text("£20")
    expect(page.locator("#cancel")).to_be_visible()
    assert fits_the_screen(page)
    shot(page, 1, "booking")

    # Cancel: the confirmation step says what comes back, and nothing has changed yet.
    page.click("#cancel")
    expect(page.locator("#question")).to_contain_text("Cancel your booking on")
    expect(page.locator("#question")).to_contain_text("You will get £20 back.")
    assert fits_the_screen(page)
    shot(page, 2, "confirm")
    committed.expire_all()
    assert committed.get(Appointment, booking.id).status == "booked"

    # Confirm: cancelled, and the page says the refund is on its way.
    page.click("#confirm")
    expect(page).to_have_url(f"{server}/b/{booking.manage_token}")
    expect(page.locator("#status")).to_contain_text("This booking is cancelled.")
    expect(page.locator("#refunded")).to_have_text("£20")
    expect(page.locator("#cancel")).to_have_count(0)
    assert fits_the_screen(page)
    shot(page, 3, "cancelled")

    # The back button and a reload change nothing more.
    page.go_back()
    page.reload()
    page.goto(f"{server}/b/{booking.manage_token}")
    expect(page.locator("#status")).to_contain_text("This booking is cancelled.")

    assert problems == []

    # A mistyped link gets the plain page (the browser logs its 404 as a console error).
    response = page.goto(f"{server}/b/{booking.manage_token[:-2]}")
    assert response.status == 404
    expect(page.locator("h1")).to_have_text("This link is not valid")
    shot(page, 4, "not-valid")
    context.close()

    assert offsite == []
    committed.expire_all()
    appt = committed.get(Appointment, booking.id)
    assert appt.status == "cancelled"
    assert appt.cancellation_reason == "cancelled by the customer (manage link)"
    [refund] = committed.query(Refund).all()
    assert refund.amount_minor == 2000
    [opening] = committed.query(SlotOpening).filter_by(source_appointment_id=booking.id).all()
    # The worker runs the loop: the slot is offered to the next customer.

    def offered() -> bool:
        committed.expire_all()
        return committed.query(Message).filter_by(purpose="offer").count() == 1

    wait_until(offered, 20, "the slot's first offer")
    assert opening.status == "open"
