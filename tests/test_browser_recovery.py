"""The admin panel in a real browser: Chromium (Debian's, driven by Playwright) against the
app served by gunicorn, with an RQ worker, real PostgreSQL and Redis, sandbox SMS and
payments. Screenshots of each step go to ``test-artifacts/browser/`` (kept out of git).

Staff log in, cancel a paid booking, watch the opening's offer go out, answer YES as the
customer, mark the deposit paid, and find the opening filled with the recovered booking.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from recovery.db import utcnow
from recovery.models import Appointment, Message, SlotOpening
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

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SHOTS = ROOT / "test-artifacts" / "browser"
PASSWORD = "browser-pw-123"
WORKER = worker_cmd(REDIS_URL)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def shop_world(committed):
    """A shop with a paid booking tomorrow and customers to offer it to (committed: the
    server and the worker are other processes)."""
    now = utcnow()
    shop = f.shop(committed, name="Browser Barbers")
    staff = f.staff(committed, shop, email="sam@barbers.example", password=PASSWORD)
    chair = f.resource(committed, shop, name="Chair 1")
    service = f.service(committed, shop, name="Skin fade")
    canceller = f.customer(committed, shop, name="Cancelling Carl")
    booking = f.appointment(
        committed, chair, canceller, service, starts_at=now + timedelta(days=1), paid=True
    )
    first = f.customer(committed, shop, name="Yes Yasmin", last_settled_at=now - timedelta(days=3))
    f.customer(committed, shop, name="Later Luke", last_settled_at=now - timedelta(days=9))
    committed.commit()
    return {"staff": staff, "booking": booking, "first": first}


@pytest.fixture
def server(app, database_url, redis_conn, shop_world) -> Iterator[str]:
    """gunicorn serving the app, and an RQ worker; sandbox SMS and payments."""
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
    with running(web, env) as gunicorn, running(WORKER, env) as worker:
        wait_until(
            lambda: answers(f"http://127.0.0.1:{port}/healthz"), 30, "gunicorn /healthz", gunicorn
        )
        yield base
        assert "Traceback" not in gunicorn.output(), gunicorn.output()
        assert "Traceback" not in worker.output(), worker.output()


class Steps:
    """One page, a screenshot per step."""

    def __init__(self, page: Page, base: str) -> None:
        self.page, self.base, self.n = page, base, 0
        SHOTS.mkdir(parents=True, exist_ok=True)

    def go(self, path: str) -> None:
        self.page.goto(self.base + path)

    def shot(self, name: str) -> None:
        self.n += 1
        self.page.screenshot(path=str(SHOTS / f"{self.n:02d}-{name}.png"), full_page=True)

    def reload_until(self, check, timeout: float = 20) -> None:
        """Reload until ``check()`` is true: the worker acts in its own time."""
        deadline = time.monotonic() + timeout
        while not check():
            assert time.monotonic() < deadline, f"timed out on {self.page.url}"
            time.sleep(0.3)
            self.page.reload()


def test_staff_recover_a_cancelled_booking_in_the_browser(browser, server, shop_world, committed):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
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
    page.on("dialog", lambda dialog: dialog.accept())  # "Cancel this booking?"
    steps = Steps(page, server)
    staff, booking, first = shop_world["staff"], shop_world["booking"], shop_world["first"]

    # A logged-out visit goes to the login page; a wrong password is refused.
    steps.go("/admin/openings/")
    expect(page).to_have_url(f"{server}/login?next=/admin/openings/?")
    page.fill("#email", staff.email)
    page.fill("#password", "not-the-password")
    page.click("button[type=submit]")
    expect(page.locator(".alert-danger")).to_contain_text("Wrong email or password.")
    steps.shot("wrong-password")

    page.fill("#email", staff.email)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    expect(page.get_by_test_id("shop-name")).to_contain_text("Browser Barbers")
    steps.shot("logged-in")

    # Cancel the paid booking: the real cancellation opens a slot.
    steps.go(f"/admin/appointments/details/?id={booking.id}")
    page.click("[data-action=appointments-cancel]")
    expect(page.locator(".alert-success")).to_contain_text("slot opening #")
    steps.shot("cancelled")
    opening_id = committed.query(SlotOpening).filter_by(source_appointment_id=booking.id).one().id

    # The opening is listed; the worker offers it to the first customer.
    steps.go("/admin/openings/")
    expect(page.locator(f'a[href*="details/?id={opening_id}"]').first).to_be_visible()
    steps.shot("openings")
    steps.go(f"/admin/openings/details/?id={opening_id}")
    offers = page.get_by_test_id("offers")
    steps.reload_until(lambda: "Yes Yasmin" in offers.inner_text())
    expect(offers.locator('[data-status="sent"]')).to_have_count(1)
    steps.reload_until(lambda: "A slot opened" in page.get_by_test_id("timeline").inner_text())
    steps.shot("offer-sent")

    # The customer answers YES (through the same handler as Twilio's webhook).
    steps.go("/admin/sandbox/")
    page.fill("#from_number", first.phone)
    page.fill("#body", "YES")
    page.click("text=Send as the customer")
    expect(page.locator(".alert-success")).to_contain_text("Reply sent to")
    steps.shot("replied-yes")

    steps.go(f"/admin/openings/details/?id={opening_id}")
    recovered = page.get_by_test_id("recovered-booking")
    expect(recovered).to_contain_text("Yes Yasmin")
    expect(recovered.locator('[data-status="pending_payment"]')).to_be_visible()
    steps.shot("pending-payment")

    # Staff mark the sandbox payment paid.
    steps.go("/admin/sandbox/")
    page.get_by_test_id("pending-payments").locator("text=Mark paid").first.click()
    expect(page.locator(".alert-success")).to_contain_text("marked succeeded: booked")
    steps.shot("paid")

    # The opening shows filled and links the recovered booking.
    steps.go(f"/admin/openings/details/?id={opening_id}")
    expect(page.get_by_test_id("opening-status")).to_contain_text("filled")
    expect(recovered.locator('[data-status="booked"]')).to_be_visible()
    steps.shot("filled")
    recovered.locator("a").first.click()
    expect(page).to_have_url(f"{server}/admin/appointments/details/?id=" + page.url.split("=")[-1])
    expect(page.locator("body")).to_contain_text("Yes Yasmin")
    steps.shot("recovered-booking")

    # The dashboard counts the recovered booking.
    steps.go("/admin/")
    expect(page.locator('[data-metric="recovered"]')).to_have_text("1")
    expect(page.locator('[data-metric="rate"]')).to_have_text("100%")
    expect(page.get_by_test_id("openings-chart").locator('[data-outcome="filled"]')).to_have_count(
        1
    )
    steps.shot("dashboard")

    page.click("text=Log out")
    expect(page).to_have_url(f"{server}/login")
    steps.go("/admin/")
    expect(page).to_have_url(f"{server}/login?next=/admin/?")
    context.close()

    assert offsite == []
    committed.expire_all()
    won = committed.query(Appointment).filter_by(source_slot_opening_id=opening_id).one()
    assert won.status == "booked" and won.customer_id == first.id
    offer_sms = committed.query(Message).filter_by(purpose="offer").one()
    assert offer_sms.status == "sent"  # delivered by the worker through the sandbox sender


def test_screenshots_stay_out_of_git():
    ignored = (ROOT / ".gitignore").read_text().split()
    assert "test-artifacts/" in ignored
    assert Path(SHOTS).is_relative_to(ROOT / "test-artifacts")
