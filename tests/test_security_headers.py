"""Security headers on every kind of response (recovery/http/security.py): the login page,
admin pages, a 404, a webhook's answer, the payment and manage pages, static files; HSTS
only in production; a new CSP nonce for every response, on every script of the page."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from recovery.models import PaymentStatus
from tests import factories as f
from tests.admin_support import *  # noqa: F403 (the shared fixtures)
from tests.scenario import scene

EVERYWHERE = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}
NONCE_IN_POLICY = re.compile(r"script-src [^;]*'nonce-([A-Za-z0-9_-]{20,})'")
SCRIPT_TAG = re.compile(r"<script\b[^>]*>", re.I)


def directives(response) -> dict[str, str]:
    policy = response.headers["Content-Security-Policy"]
    pairs = (part.strip().split(" ", 1) for part in policy.split(";"))
    return {name: sources for name, sources in pairs}


def assert_secured(response, referrer: str = "strict-origin-when-cross-origin") -> dict:
    for name, value in EVERYWHERE.items():
        assert response.headers[name] == value, (response.request.path, name)
    assert response.headers["Referrer-Policy"] == referrer
    assert "Strict-Transport-Security" not in response.headers  # not in development
    policy = directives(response)
    assert policy["frame-ancestors"] == "'none'"
    assert policy["base-uri"] == "'none'"
    # No directive lets an inline script or eval run without the nonce.
    for name in ("default-src", "script-src"):
        assert "'unsafe-inline'" not in policy.get(name, "")
        assert "'unsafe-eval'" not in policy.get(name, "")
    return policy


def nonce_of(response) -> str:
    match = NONCE_IN_POLICY.search(response.headers["Content-Security-Policy"])
    assert match, response.headers["Content-Security-Policy"]
    return match.group(1)


@pytest.fixture
def pending_pay_token(session, clock) -> str:
    """A booking whose deposit waits on the payment page (sandbox: no gateway call)."""
    s = scene(session, clock.now)
    held = f.appointment(
        session,
        s.chair,
        s.owner,
        s.service,
        starts_at=clock.now + timedelta(days=3),
        status="pending_payment",
        payment_due_at=clock.now + timedelta(hours=1),
    )
    deposit = f.payment(session, held, status=PaymentStatus.PENDING, provider_ref=None)
    session.commit()
    return deposit.token


def test_login_page_404_static_and_webhook_answers(client, session):
    login = client.get("/login")
    assert login.status_code == 200
    policy = assert_secured(login)
    assert policy["default-src"] == "'self'" and policy["form-action"] == "'self'"

    missing = client.get("/no-such-page")
    assert missing.status_code == 404
    assert_secured(missing)

    for url in ("/admin/static/vendor/jquery.min.js", "/admin/calendar/static/handlers.js"):
        static = client.get(url)
        static.close()  # a file response holds the file open until closed
        assert static.status_code == 200
        assert_secured(static)

    unsigned = client.post("/webhooks/stripe", data=b"{}")
    assert unsigned.status_code == 400
    assert_secured(unsigned)
    health = client.get("/healthz")
    assert_secured(health)


@pytest.mark.parametrize("url", ["/admin/", "/admin/calendar/", "/admin/appointments/"])
def test_admin_pages_carry_the_nonce_on_every_script(owner_client, url):
    response = owner_client.get(url)
    assert response.status_code == 200
    policy = assert_secured(response)
    assert policy["script-src"].startswith("'self' 'nonce-")
    nonce = nonce_of(response)
    tags = SCRIPT_TAG.findall(response.get_data(as_text=True))
    assert tags, "the admin pages load Flask-Admin's scripts"
    for tag in tags:
        assert f'nonce="{nonce}"' in tag, tag
    html = response.get_data(as_text=True)
    assert not re.search(r"\son[a-z]+\s*=", html), "an inline event handler would be refused"


def test_list_actions_and_filters_need_no_inline_handlers(owner_client):
    """The list's "With selected" menu and its filters, which Flask-Admin writes with
    onclick attributes, are data attributes here (admin/static/handlers.js runs them)."""
    html = owner_client.get("/admin/openings/").get_data(as_text=True)
    assert 'data-model-action="expire"' in html
    assert 'class="dropdown-item filter"' in html
    assert "onclick" not in html


def test_nonce_is_new_for_every_response(owner_client):
    first, second = owner_client.get("/admin/"), owner_client.get("/admin/")
    assert nonce_of(first) != nonce_of(second)
    assert f'nonce="{nonce_of(second)}"' in second.get_data(as_text=True)
    assert f'nonce="{nonce_of(first)}"' not in second.get_data(as_text=True)


def test_pay_page_allows_stripe_and_stays_private(client, pending_pay_token):
    for response in (client.get(f"/pay/{pending_pay_token}"), client.get("/pay/nope")):
        assert response.status_code in (200, 404)
        policy = assert_secured(response, referrer="no-referrer")
        assert response.headers["Cache-Control"] == "no-store"
        assert "https://js.stripe.com" in policy["script-src"]
        assert "https://js.stripe.com" in policy["frame-src"]
        assert "https://hooks.stripe.com" in policy["frame-src"]
        assert "https://api.stripe.com" in policy["connect-src"]


def test_manage_page_runs_no_script(client, session, clock):
    s = scene(session, clock.now)
    session.commit()
    for response in (client.get(f"/b/{s.booking.manage_token}"), client.get("/b/nope")):
        assert response.status_code in (200, 404)
        policy = assert_secured(response, referrer="no-referrer")
        assert policy["default-src"] == "'none'" and "script-src" not in policy
        assert response.headers["X-Robots-Tag"] == "noindex, nofollow"


def test_hsts_only_in_production(make_app, session):
    production = make_app(APP_ENV="production").test_client()
    for url in ("/login", "/no-such-page", "/admin/static/vendor/jquery.min.js"):
        response = production.get(url)
        response.close()
        assert response.headers["Strict-Transport-Security"] == (
            "max-age=31536000; includeSubDomains"
        )
        assert response.headers["X-Frame-Options"] == "DENY"


def test_google_consent_page_is_an_allowed_form_target(make_app, session):
    """Browsers check form-action on a form's redirect: "Connect Google Calendar" posts
    to the app, which redirects to Google's consent page."""
    google = make_app(
        GOOGLE_CLIENT_ID="client-id",
        GOOGLE_CLIENT_SECRET="client-secret",
        CALENDAR_TOKEN_KEYS=("PEAoNmBV3dy6s8Zf8Wq0QlC6Rd6tGZ6B1xJ7wF0ZyQk=",),
    ).test_client()
    policy = directives(google.get("/login"))
    assert policy["form-action"] == "'self' https://accounts.google.com"
