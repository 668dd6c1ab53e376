"""Every page works under its Content Security Policy, in a real browser: Chromium (Debian's,
driven by Playwright) against the app served by gunicorn with an RQ worker, real
PostgreSQL and Redis, and localstripe behind the payment page.

Logged in as an owner, the test opens every admin page it finds in the app's URL map
(each view's list, create, details and edit pages, the calendar's day and week, settings,
staff, sandbox, busy time...), the login page, the payment page (with Stripe's card form)
and the manage page. Any console message or page error about the Content Security Policy
fails it. On each kind of page it also clicks something, so the handlers run: a list's
"With selected" menu and one of its actions, a filter, a confirm button, the Pay button.
Screenshots go to ``test-artifacts/browser/csp-*.png``.

Stripe.js (https://js.stripe.com) is the outside world and the test runs offline: the
browser is served a small stand-in script at that address, so the page's policy must
still allow Stripe's real domain.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta

import pytest
from flask import Flask
from playwright.sync_api import Browser, Page, expect, sync_playwright

from recovery.db import utcnow
from recovery.models import (
    Appointment,
    AppointmentStatus,
    BusyBlock,
    Customer,
    Message,
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
from tests.admin_support import PASSWORD, build_world
from tests.conftest import REDIS_URL, STRIPE_WEBHOOK_SECRET
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

SHOTS = ROOT / "test-artifacts" / "browser"
CSP_WORDS = re.compile(r"Content Security Policy|Content-Security-Policy|Refused to", re.I)

# A stand-in for Stripe.js: the same calls the payment page makes, no network.
STRIPE_STUB = """
window.Stripe = function () {
  return {
    elements: function () {
      return { create: function () { return { mount: function (selector) {
        document.querySelector(selector).textContent = "card form (test stand-in)";
      } }; } };
    },
    confirmPayment: function () {
      return Promise.resolve({ error: { message: "Test card declined (stand-in)." } });
    }
  };
};
"""

# Pages that are not pages: the OAuth return address (answers Google's redirect).
NOT_PAGES = {"resources.calendar_callback"}
# Pages of one row: ``?id=`` of a row of the view's model in the owner's shop.
ROW_PAGES = {"details_view", "edit_view", "deposit_view", "refund_view"}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def world(committed):
    """A shop with one of everything the admin shows, a deposit waiting on the Stripe
    payment page, and a manual busy block (committed: the server is another process)."""
    now = utcnow()
    w = build_world(committed, now, "CSP Barbers", "+447700800011")
    held = f.appointment(
        committed,
        w.chair,
        w.customers[1],
        w.service,
        starts_at=now + timedelta(days=4),
        status=AppointmentStatus.PENDING_PAYMENT,
        payment_due_at=now + timedelta(hours=2),
    )
    stripe_deposit = f.payment(
        committed, held, provider="stripe", provider_ref=None, status=PaymentStatus.PENDING
    )
    soon = now + timedelta(days=1, hours=3)
    block = f.block(committed, w.shop, soon, soon + timedelta(hours=1), resource=w.chair)
    committed.commit()
    return {"world": w, "pay_token": stripe_deposit.token, "block": block}


@pytest.fixture
def server(app, database_url, redis_conn, localstripe, world) -> Iterator[str]:
    port = free_port()
    env = process_env(
        database_url,
        REDIS_URL,
        STRIPE_SECRET_KEY="sk_test_local",
        STRIPE_PUBLISHABLE_KEY="pk_test_local",
        STRIPE_WEBHOOK_SECRET=STRIPE_WEBHOOK_SECRET,
        STRIPE_API_BASE_URL=localstripe,
    )
    web = [str(BIN / "gunicorn"), "--bind", f"127.0.0.1:{port}", "--workers", "1"]
    web += ["--threads", "4", "app:create_app()"]
    base = f"http://127.0.0.1:{port}"
    with running(web, env) as gunicorn, running(worker_cmd(REDIS_URL), env) as worker:
        wait_until(lambda: answers(f"{base}/healthz"), 30, "gunicorn /healthz", gunicorn)
        yield base
        assert "Traceback" not in gunicorn.output(), gunicorn.output()
        assert "Traceback" not in worker.output(), worker.output()


def admin_pages(app: Flask, committed, world) -> list[str]:
    """Every admin page as a URL to open, found in the URL map: each Flask-Admin view's
    GET rules without path arguments, with a row id for the one-row pages."""
    admin = app.extensions["admin"][0]
    views = {view.endpoint: view for view in admin._views}
    urls: list[str] = []
    with app.test_request_context():
        for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
            view_name, _, page = rule.endpoint.partition(".")
            view = views.get(view_name)
            if view is None or "GET" not in rule.methods or rule.arguments:
                continue
            if rule.endpoint in NOT_PAGES or page in ("static", "ajax_lookup", "ajax_update"):
                continue
            if page in ROW_PAGES:
                row_id = row_of(committed, world, view, page)
                if row_id is None:
                    continue
                urls.append(f"{rule.rule}?id={row_id}")
            else:
                urls.append(rule.rule)
            if rule.endpoint == "calendar.index":
                urls.append(f"{rule.rule}?view=week")
    return urls


def row_of(committed, world, view, page: str) -> int | None:
    """A row of the owner's shop for a one-row page: the world's own rows first, else the
    first row of the model with the shop's id."""
    w = world["world"]
    if page == "deposit_view":
        return w.held.id
    model = getattr(view, "model", None)
    known = {
        Shop: w.shop,
        Appointment: w.booking,
        Payment: w.payment,
        SlotOpening: w.opening,
        SlotOffer: w.offer,
        Customer: w.customers[0],
        Message: w.message,
        Resource: w.chair,
        Service: w.service,
        StaffUser: w.clerk,
        BusyBlock: world["block"],
    }
    if model in known:
        return known[model].id
    if model is None or not hasattr(model, "shop_id"):
        return None
    row = committed.query(model).filter_by(shop_id=w.shop.id).order_by(model.id).first()
    return row and row.id


class CspWatch:
    """Collects what the browser says about the policy, page by page."""

    def __init__(self, page: Page) -> None:
        self.problems: list[str] = []
        self.where = ""
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.problems.append(f"{self.where}: {error}"))

    def _console(self, message) -> None:
        if CSP_WORDS.search(message.text):
            self.problems.append(f"{self.where}: [{message.type}] {message.text}")


def test_every_page_runs_under_its_policy(browser, server, app, committed, world):
    w = world["world"]
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    offsite: list[str] = []
    stripe_loaded: list[str] = []

    def route(route) -> None:
        url = route.request.url
        if url.startswith(server):
            route.continue_()
        elif url.startswith("https://js.stripe.com/"):
            stripe_loaded.append(url)
            route.fulfill(status=200, content_type="text/javascript", body=STRIPE_STUB)
        else:  # works offline: nothing else may be fetched from outside
            offsite.append(url)
            route.abort()

    context.route("**/*", route)
    page = context.new_page()
    page.set_default_timeout(15_000)
    dialogs: list[str] = []

    def answer(dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()  # look, then say no: nothing is changed

    page.on("dialog", answer)
    watch = CspWatch(page)
    SHOTS.mkdir(parents=True, exist_ok=True)

    def visit(path: str, shot: str | None = None) -> None:
        watch.where = path
        response = page.goto(server + path)
        assert response is not None and response.status < 500, (path, response)
        page.wait_for_load_state("load")
        assert watch.problems == [], watch.problems
        if shot:
            page.screenshot(path=str(SHOTS / f"csp-{shot}.png"), full_page=True)

    visit("/login", "login")
    page.fill("#email", w.owner.email)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    expect(page.get_by_test_id("shop-name")).to_contain_text("CSP Barbers")

    pages = admin_pages(app, committed, world)
    for must in ("/admin/", "/admin/calendar/?view=week", "/admin/staff/", "/admin/sandbox/"):
        assert must in pages, pages
    assert any(p.startswith("/admin/appointments/details/?id=") for p in pages), pages
    for path in pages:
        visit(path)
        # Still signed in and on the page asked for (no redirect to the login).
        assert "/login" not in page.url, (path, page.url)
    page.screenshot(path=str(SHOTS / "csp-last-admin-page.png"), full_page=True)

    # A list: open "With selected", pick an action with no row selected (Flask-Admin's
    # actions.js says so in an alert); open a filter and add one.
    visit("/admin/openings/")
    page.click("text=With selected")
    page.locator("[data-model-action=expire]").click()
    assert dialogs and "select" in dialogs[-1].lower(), dialogs
    page.click("text=Add Filter")
    page.locator("a.filter").first.click()
    expect(page.locator(".filter-val").first).to_be_visible()
    page.screenshot(path=str(SHOTS / "csp-list-filter.png"), full_page=True)

    # A row's confirm button: the question is asked, the answer "no" keeps the booking.
    visit(f"/admin/appointments/details/?id={w.booking.id}")
    page.click("[data-action=appointments-cancel]")
    assert dialogs[-1].startswith("Cancel this booking?"), dialogs
    expect(page).to_have_url(re.compile(r"/admin/appointments/details/"))
    committed.expire_all()
    assert committed.get(Appointment, w.booking.id).status == AppointmentStatus.BOOKED

    # A row's delete button in a list (Flask-Admin's own, asks first): "no" keeps the row.
    visit("/admin/customers/")
    asked = len(dialogs)
    page.locator("form.icon button[data-confirm]").first.click()
    assert len(dialogs) == asked + 1 and "delete" in dialogs[-1], dialogs
    expect(page.locator("form.icon button[data-confirm]")).to_have_count(len(w.customers))
    page.screenshot(path=str(SHOTS / "csp-customers.png"), full_page=True)

    # The payment page: Stripe's script from its real address, the page's nonce'd script
    # mounts the card form and handles the Pay button.
    visit(f"/pay/{world['pay_token']}")
    expect(page.locator("#card")).to_contain_text("card form")
    page.click("button[type=submit]")
    expect(page.locator("#error")).to_contain_text("declined")
    page.screenshot(path=str(SHOTS / "csp-pay.png"), full_page=True)
    assert stripe_loaded == ["https://js.stripe.com/v3/"]

    # The manage page: its form steps work with no script at all.
    visit(f"/b/{w.booking.manage_token}", "manage")
    watch.where = "manage: cancel"
    page.click("button[type=submit]")
    expect(page).to_have_url(re.compile(r"/cancel$"))
    page.screenshot(path=str(SHOTS / "csp-manage-confirm.png"), full_page=True)

    context.close()
    assert watch.problems == []
    assert offsite == []
