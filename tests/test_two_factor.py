"""Two-factor sign-in: enrolment through the pages, the code step after the password, codes
that work once, recovery codes, the shop's rule, the owner's reset, and the audit trail.

Codes are computed with pyotp from the secret the enrolment page shows, at the app's test
clock; moving the clock moves the 30-second time steps.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pyotp
import pytest
from playwright.sync_api import Browser, expect, sync_playwright
from sqlalchemy import select

from admin import totp
from admin.two_factor import PENDING_SECONDS
from recovery.audit import AuditAction
from recovery.models import AuditEvent, RecoveryCode, StaffUser
from tests import factories as f
from tests.admin_support import *  # noqa: F403 (the shared fixtures)
from tests.admin_support import (
    PASSWORD,
    act,
    csrf_token,
    forget_cached_request_state,
    login,
    settings_form,
)
from tests.conftest import REDIS_URL
from tests.processes import BIN, ROOT, answers, free_port, process_env, running, wait_until
from tests.test_browser_recovery import CHROMIUM, CHROMIUM_ARGS

SECRET_RE = re.compile(r'data-testid="secret">([A-Z2-7 ]+)<')
RECOVERY_RE = re.compile(r'<li class="col-6 text-monospace py-1">([a-z0-9-]+)</li>')
ACCOUNT = "/account/two-factor"


def text(response) -> str:
    return response.get_data(as_text=True)


def get(client, url: str = "/admin/"):
    """A request as this client alone (the test's app context outlives requests)."""
    forget_cached_request_state()
    return client.get(url)


def send(client, url: str, data: dict, token_from: str = ACCOUNT):
    """POST a form with the session's CSRF token (read from a page this client may see)."""
    token = csrf_token(client, token_from)
    forget_cached_request_state()
    return client.post(url, data={"csrf_token": token, **data})


def signed_in(client) -> bool:
    return get(client).status_code == 200


def enrol(client, clock) -> tuple[str, list[str]]:
    """Enrol the signed-in client's account through the pages: the secret and the codes."""
    page = text(get(client, f"{ACCOUNT}/enrol"))
    secret = SECRET_RE.search(page).group(1).replace(" ", "")
    code = pyotp.TOTP(secret).at(clock.now)
    response = send(client, f"{ACCOUNT}/enrol", {"code": code}, token_from=f"{ACCOUNT}/enrol")
    assert response.status_code == 200, text(response)
    codes = RECOVERY_RE.findall(text(response))
    assert len(codes) == 10
    return secret, codes


def sign_in_with_code(app, email: str, code: str):
    """A new browser: the password, then the code. The code step's response."""
    client = app.test_client()
    response = login(client, email)
    assert response.status_code == 302 and response.location.endswith("/login/code")
    return client, send(client, "/login/code", {"code": code}, token_from="/login/code")


def next_code(secret: str, clock) -> str:
    """A code of a time step not used yet."""
    clock.advance(seconds=30)
    return pyotp.TOTP(secret).at(clock.now)


def recovery_rows(session, staff_id: int) -> list[RecoveryCode]:
    query = select(RecoveryCode).where(RecoveryCode.staff_id == staff_id)
    return list(session.scalars(query.order_by(RecoveryCode.id)))


def trail(session, staff_id: int) -> list[AuditEvent]:
    query = select(AuditEvent).where(
        AuditEvent.action == AuditAction.TWO_FACTOR_CHANGED.value,
        AuditEvent.target_id == staff_id,
        AuditEvent.target_type == "staff_users",
    )
    return list(session.scalars(query.order_by(AuditEvent.id)))


def enrolled_clerk(app, clock, shop_a) -> tuple[str, list[str]]:
    client = app.test_client()
    assert login(client, shop_a.clerk.email).status_code == 302
    return enrol(client, clock)


# ---------------------------------------------------------------- enrolment


def test_enrolment_shows_a_qr_code_and_the_key(app, session, clock, shop_a):
    client = app.test_client()
    login(client, shop_a.clerk.email)
    response = get(client, f"{ACCOUNT}/enrol")
    page = text(response)
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    # An inline SVG drawn by the app: no image from elsewhere, no script on the page.
    assert re.search(r'<svg [^>]*role="img"[^>]*viewBox="0 0 \d+ \d+"', page)
    assert '<path d="M' in page and "<script" not in page
    secret = SECRET_RE.search(page).group(1).replace(" ", "")
    assert len(secret) == 32
    # A reload shows the same secret (the one stored, waiting to be confirmed).
    assert SECRET_RE.search(text(get(client, f"{ACCOUNT}/enrol"))).group(1).replace(" ", "") == (
        secret
    )
    clerk = session.get(StaffUser, shop_a.clerk.id)
    assert clerk.totp_enabled_at is None
    uri = totp.provisioning_uri(clerk, secret)
    assert uri.startswith("otpauth://totp/Slot%20Recovery:")
    assert "issuer=Slot%20Recovery" in uri and f"secret={secret}" in uri


def test_enrolment_needs_a_right_code(app, session, clock, shop_a):
    client = app.test_client()
    login(client, shop_a.clerk.email)
    page = text(get(client, f"{ACCOUNT}/enrol"))
    secret = SECRET_RE.search(page).group(1).replace(" ", "")
    wrong = f"{(int(pyotp.TOTP(secret).at(clock.now)) + 1) % 1_000_000:06d}"
    response = send(client, f"{ACCOUNT}/enrol", {"code": wrong}, token_from=f"{ACCOUNT}/enrol")
    assert response.status_code == 401
    session.expire_all()
    assert session.get(StaffUser, shop_a.clerk.id).totp_enabled_at is None


def test_enrolment_stores_secret_and_recovery_codes_only_encrypted_or_hashed(
    app, session, clock, shop_a
):
    secret, codes = enrolled_clerk(app, clock, shop_a)
    session.expire_all()
    clerk = session.get(StaffUser, shop_a.clerk.id)
    assert clerk.totp_enabled_at == clock.now
    stored = bytes(clerk.totp_secret)
    assert secret.encode() not in stored and secret.lower().encode() not in stored
    hashes = session.scalars(
        select(RecoveryCode.code_hash).where(RecoveryCode.staff_id == clerk.id)
    )
    hashes = list(hashes)
    assert len(hashes) == 10 and len(set(codes)) == 10
    for code in codes:
        assert all(code not in h and code.replace("-", "") not in h for h in hashes)
    assert all(h.startswith("scrypt:") for h in hashes)
    (event,) = trail(session, clerk.id)
    assert event.staff_id == clerk.id and event.note == "enrolled"
    assert event.before == {"two_factor": False} and event.after == {"two_factor": True}


# ---------------------------------------------------------------- the code step


def test_sign_in_asks_for_the_code_after_the_password(app, session, clock, shop_a):
    secret, _ = enrolled_clerk(app, clock, shop_a)
    client = app.test_client()
    response = login(client, shop_a.clerk.email)
    assert response.status_code == 302 and response.location.endswith("/login/code")
    # The password alone signs nobody in.
    assert not signed_in(client)
    response = send(client, "/login/code", {"code": next_code(secret, clock)}, "/login/code")
    assert response.status_code == 302 and response.location.endswith("/admin/calendar/")
    assert signed_in(client)


def test_sign_in_keeps_the_page_asked_for(app, session, clock, shop_a):
    secret, _ = enrolled_clerk(app, clock, shop_a)
    client = app.test_client()
    forget_cached_request_state()
    token = csrf_token(client, "/login")
    response = client.post(
        "/login?next=/admin/customers/",
        data={"csrf_token": token, "email": shop_a.clerk.email, "password": PASSWORD},
    )
    assert response.location.endswith("/login/code")
    response = send(client, "/login/code", {"code": next_code(secret, clock)}, "/login/code")
    assert response.location.endswith("/admin/customers/")


def test_a_wrong_code_is_refused(app, session, clock, shop_a):
    secret, _ = enrolled_clerk(app, clock, shop_a)
    right = next_code(secret, clock)
    wrong = f"{(int(right) + 1) % 1_000_000:06d}"
    client, response = sign_in_with_code(app, shop_a.clerk.email, wrong)
    assert response.status_code == 401
    assert "That code did not work" in text(response)
    assert not signed_in(client)
    # A code from two steps ago is outside the window.
    old = pyotp.TOTP(secret).at(clock.now, counter_offset=-2)
    response = send(client, "/login/code", {"code": old}, "/login/code")
    assert response.status_code == 401 and not signed_in(client)


def test_a_code_works_once(app, session, clock, shop_a):
    secret, _ = enrolled_clerk(app, clock, shop_a)
    code = next_code(secret, clock)
    first, response = sign_in_with_code(app, shop_a.clerk.email, code)
    assert response.status_code == 302 and signed_in(first)
    # The same code, in the same 30 seconds, from another browser: refused.
    second, response = sign_in_with_code(app, shop_a.clerk.email, code)
    assert response.status_code == 401 and not signed_in(second)
    # So is the previous step's code, still in the window but older than the one used.
    previous = pyotp.TOTP(secret).at(clock.now, counter_offset=-1)
    response = send(second, "/login/code", {"code": previous}, "/login/code")
    assert response.status_code == 401 and not signed_in(second)
    # The next step's code works.
    response = send(second, "/login/code", {"code": next_code(secret, clock)}, "/login/code")
    assert response.status_code == 302 and signed_in(second)


def test_the_code_used_to_enrol_cannot_sign_in(app, session, clock, shop_a):
    secret, _ = enrolled_clerk(app, clock, shop_a)
    _, response = sign_in_with_code(app, shop_a.clerk.email, pyotp.TOTP(secret).at(clock.now))
    assert response.status_code == 401


def test_a_recovery_code_signs_in_once(app, session, clock, shop_a):
    _, codes = enrolled_clerk(app, clock, shop_a)
    # Typed in capitals with a space instead of the dash: still the code.
    typed = codes[3].upper().replace("-", " ")
    client, response = sign_in_with_code(app, shop_a.clerk.email, typed)
    assert response.status_code == 302
    assert "Signed in with a recovery code: 9 left." in text(get(client, response.location))
    used = session.scalars(
        select(RecoveryCode).where(
            RecoveryCode.staff_id == shop_a.clerk.id, RecoveryCode.used_at.is_not(None)
        )
    ).all()
    assert len(used) == 1 and used[0].used_at == clock.now

    again, response = sign_in_with_code(app, shop_a.clerk.email, codes[3])
    assert response.status_code == 401 and not signed_in(again)
    # Another unused one still works.
    response = send(again, "/login/code", {"code": codes[4]}, "/login/code")
    assert response.status_code == 302 and signed_in(again)
    notes = [e.note for e in trail(session, shop_a.clerk.id)]
    assert notes[-2:] == [
        "signed in with a recovery code; 9 left",
        "signed in with a recovery code; 8 left",
    ]


def test_the_code_step_expires(app, session, clock, shop_a):
    secret, _ = enrolled_clerk(app, clock, shop_a)
    client = app.test_client()
    assert login(client, shop_a.clerk.email).location.endswith("/login/code")
    clock.advance(seconds=PENDING_SECONDS + 1)
    forget_cached_request_state()
    token = csrf_token(client, "/login")
    forget_cached_request_state()
    response = client.post(
        "/login/code", data={"csrf_token": token, "code": pyotp.TOTP(secret).at(clock.now)}
    )
    assert response.status_code == 302 and response.location.endswith("/login")
    assert not signed_in(client)
    assert "sign in again" in text(get(client, "/login"))


def test_no_code_step_without_the_password_first(app, session, clock, shop_a):
    enrolled_clerk(app, clock, shop_a)
    client = app.test_client()
    response = get(client, "/login/code")
    assert response.status_code == 302 and response.location.endswith("/login")


def test_a_password_reset_ends_a_waiting_code_step(app, session, clock, shop_a):
    secret, _ = enrolled_clerk(app, clock, shop_a)
    client = app.test_client()
    assert login(client, shop_a.clerk.email).location.endswith("/login/code")
    token = csrf_token(client, "/login/code")
    clerk = session.get(StaffUser, shop_a.clerk.id)
    clerk.session_version += 1  # what a reset or a disable does (admin/sessions.py)
    session.commit()
    forget_cached_request_state()
    response = client.post(
        "/login/code", data={"csrf_token": token, "code": next_code(secret, clock)}
    )
    assert response.status_code == 302 and response.location.endswith("/login")
    assert not signed_in(client)


def test_wrong_codes_are_throttled(app, session, clock, shop_a):
    secret, _ = enrolled_clerk(app, clock, shop_a)
    right = next_code(secret, clock)
    wrong = f"{(int(right) + 1) % 1_000_000:06d}"
    client = app.test_client()
    login(client, shop_a.clerk.email)
    for _ in range(5):
        response = send(client, "/login/code", {"code": wrong}, "/login/code")
        assert response.status_code == 401
    # Now even the right code waits: guessing six digits must stay slow.
    response = send(client, "/login/code", {"code": right}, "/login/code")
    assert response.status_code == 429 and response.headers["Retry-After"] == "1"
    assert "Too many wrong codes. Try again in 1 second." in text(response)
    assert not signed_in(client)
    # Each further failure doubles the wait.
    clock.advance(seconds=2)
    assert send(client, "/login/code", {"code": wrong}, "/login/code").status_code == 401
    response = send(client, "/login/code", {"code": right}, "/login/code")
    assert response.status_code == 429 and response.headers["Retry-After"] == "2"
    # Once it has passed, the right code signs in (and clears the count).
    clock.advance(seconds=3)
    response = send(client, "/login/code", {"code": right}, "/login/code")
    assert response.status_code == 302 and signed_in(client)


def test_enrolment_codes_are_throttled_too(app, session, clock, shop_a):
    client = app.test_client()
    login(client, shop_a.clerk.email)
    page = text(get(client, f"{ACCOUNT}/enrol"))
    secret = SECRET_RE.search(page).group(1).replace(" ", "")
    wrong = f"{(int(pyotp.TOTP(secret).at(clock.now)) + 1) % 1_000_000:06d}"
    for _ in range(5):
        response = send(client, f"{ACCOUNT}/enrol", {"code": wrong}, f"{ACCOUNT}/enrol")
        assert response.status_code == 401
    right = pyotp.TOTP(secret).at(clock.now)
    response = send(client, f"{ACCOUNT}/enrol", {"code": right}, f"{ACCOUNT}/enrol")
    assert response.status_code == 429


# ---------------------------------------------------------------- the account page


def test_turning_it_off_needs_a_code_or_the_password(app, session, clock, shop_a):
    client = app.test_client()
    login(client, shop_a.clerk.email)
    enrol(client, clock)
    response = send(client, f"{ACCOUNT}/disable", {"password": "not-it"})
    assert response.status_code == 302
    session.expire_all()
    assert session.get(StaffUser, shop_a.clerk.id).totp_enabled_at is not None

    response = send(client, f"{ACCOUNT}/disable", {"password": PASSWORD})
    assert response.status_code == 302
    session.expire_all()
    clerk = session.get(StaffUser, shop_a.clerk.id)
    assert clerk.totp_secret is None and clerk.totp_enabled_at is None
    assert (
        session.scalars(select(RecoveryCode).where(RecoveryCode.staff_id == clerk.id)).all() == []
    )
    assert trail(session, clerk.id)[-1].note == "turned off by the user"
    # The password alone signs in again.
    assert login(app.test_client(), shop_a.clerk.email).location.endswith("/admin/calendar/")


def test_new_recovery_codes_replace_the_old_ones(app, session, clock, shop_a):
    client = app.test_client()
    login(client, shop_a.clerk.email)
    secret, old = enrol(client, clock)
    response = send(client, f"{ACCOUNT}/recovery-codes", {"code": next_code(secret, clock)})
    assert response.status_code == 200
    new = RECOVERY_RE.findall(text(response))
    assert len(new) == 10 and not set(new) & set(old)
    _, response = sign_in_with_code(app, shop_a.clerk.email, old[0])
    assert response.status_code == 401
    other, response = sign_in_with_code(app, shop_a.clerk.email, new[0])
    assert response.status_code == 302 and signed_in(other)


# ---------------------------------------------------------------- the shop's rule


def test_the_shop_rule_forces_enrolment_before_any_admin_page(app, session, clock, shop_a):
    owner = app.test_client()
    login(owner, shop_a.owner.email)
    url = f"/admin/shop_settings/edit/?id={shop_a.shop.id}"
    form = settings_form(shop_a.shop, require_two_factor="y")
    response = send(owner, url, form, token_from=url)
    assert response.status_code == 302
    (event,) = trail_of_shop(session, shop_a.shop.id)
    assert event.staff_id == shop_a.owner.id and event.note == "shop rule"
    assert event.before == {"require_two_factor": False}
    assert event.after == {"require_two_factor": True}

    clerk = app.test_client()
    response = login(clerk, shop_a.clerk.email)
    assert response.status_code == 302
    for page in ("/admin/", "/admin/calendar/", "/admin/appointments/", "/admin/customers/"):
        response = get(clerk, page)
        assert response.status_code == 302, page
        assert response.location.endswith(f"{ACCOUNT}/enrol"), page
    page = text(get(clerk, f"{ACCOUNT}/enrol"))
    assert "Your shop requires two-factor sign-in" in page
    # The page's own stylesheet is not held back.
    css = get(clerk, "/admin/static/bootstrap/bootstrap4/css/bootstrap.min.css")
    css.close()
    assert css.status_code == 200

    enrol(clerk, clock)
    assert get(clerk, "/admin/customers/").status_code == 200
    # The owner, who turned it on, is held to it as well.
    assert get(owner, "/admin/").location.endswith(f"{ACCOUNT}/enrol")


def trail_of_shop(session, shop_id: int) -> list[AuditEvent]:
    query = select(AuditEvent).where(
        AuditEvent.action == AuditAction.TWO_FACTOR_CHANGED.value,
        AuditEvent.shop_id == shop_id,
        AuditEvent.target_type == "shops",
    )
    return list(session.scalars(query))


# ---------------------------------------------------------------- the owner's reset


def test_the_owner_resets_a_lost_phone(app, session, clock, shop_a):
    secret, _ = enrolled_clerk(app, clock, shop_a)
    clerk_browser, response = sign_in_with_code(app, shop_a.clerk.email, next_code(secret, clock))
    assert signed_in(clerk_browser)

    owner = app.test_client()
    login(owner, shop_a.owner.email)
    forget_cached_request_state()
    response = act(owner, "staff", "reset_two_factor", shop_a.clerk.id)
    assert response.status_code == 302
    session.expire_all()
    clerk = session.get(StaffUser, shop_a.clerk.id)
    assert clerk.totp_secret is None and clerk.totp_enabled_at is None
    assert (
        session.scalars(select(RecoveryCode).where(RecoveryCode.staff_id == clerk.id)).all() == []
    )
    event = trail(session, clerk.id)[-1]
    assert event.staff_id == shop_a.owner.id and event.note == "reset by the owner"
    assert event.before == {"two_factor": True} and event.after == {"two_factor": False}
    # Their sessions ended; the password alone signs them in, to enrol again.
    assert not signed_in(clerk_browser)
    assert login(app.test_client(), shop_a.clerk.email).location.endswith("/admin/calendar/")


def test_the_reset_is_for_the_owner_and_their_own_shop(app, session, clock, shop_a, shop_b):
    enrolled_clerk(app, clock, shop_a)
    clerk = app.test_client()
    # (The clerk just enrolled, so this browser's password step now asks for a code.)
    owner_b = app.test_client()
    login(owner_b, shop_b.owner.email)
    forget_cached_request_state()
    assert act(owner_b, "staff", "reset_two_factor", shop_a.clerk.id).status_code == 404
    login(clerk, shop_b.clerk.email)
    forget_cached_request_state()
    assert act(clerk, "staff", "reset_two_factor", shop_a.clerk.id).status_code == 403
    session.expire_all()
    assert session.get(StaffUser, shop_a.clerk.id).totp_enabled_at is not None


# ---------------------------------------------------------------- the key


def test_a_new_secret_key_still_opens_secrets_sealed_with_the_old_one(
    app, session, clock, shop_a, monkeypatch
):
    secret, _ = enrolled_clerk(app, clock, shop_a)
    old_blob = bytes(session.get(StaffUser, shop_a.clerk.id).totp_secret)
    monkeypatch.setitem(app.config, "SECRET_KEY", "a-new-secret-key")
    monkeypatch.setitem(app.config, "SECRET_KEY_FALLBACKS", ["test-secret-key"])
    client, response = sign_in_with_code(app, shop_a.clerk.email, next_code(secret, clock))
    assert response.status_code == 302 and signed_in(client)
    # Re-encrypted with the new key: it now opens without the old one.
    session.expire_all()
    new_blob = bytes(session.get(StaffUser, shop_a.clerk.id).totp_secret)
    assert new_blob != old_blob
    monkeypatch.setitem(app.config, "SECRET_KEY_FALLBACKS", [])
    _, response = sign_in_with_code(app, shop_a.clerk.email, next_code(secret, clock))
    assert response.status_code == 302


# ---------------------------------------------------------------- in a real browser

SHOTS = ROOT / "test-artifacts" / "browser"
CSP_WORDS = re.compile(r"Content Security Policy|Content-Security-Policy|Refused to", re.I)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def served(app, database_url, redis_conn, committed) -> Iterator[tuple[str, str]]:
    """gunicorn serving the app (its own clock: real time), one staff member, no worker."""
    shop = f.shop(committed, name="Two-Factor Barbers")
    staff = f.staff(committed, shop, email="kim@barbers.example", password=PASSWORD)
    committed.commit()
    port = free_port()
    web = [str(BIN / "gunicorn"), "--bind", f"127.0.0.1:{port}", "--workers", "1"]
    web += ["--threads", "2", "app:create_app()"]
    with running(web, process_env(database_url, REDIS_URL)) as gunicorn:
        wait_until(
            lambda: answers(f"http://127.0.0.1:{port}/healthz"), 30, "gunicorn /healthz", gunicorn
        )
        yield f"http://127.0.0.1:{port}", staff.email
        assert "Traceback" not in gunicorn.output(), gunicorn.output()


def test_enrol_and_sign_in_in_the_browser(browser, served):
    base, email = served
    SHOTS.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    refused: list[str] = []
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.on("console", lambda m: refused.append(m.text) if CSP_WORDS.search(m.text) else None)

    page.goto(f"{base}/login")
    page.fill("#email", email)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/admin/calendar/")
    page.click("text=Two-factor sign-in")
    page.click("text=Set up two-factor sign-in")
    page.wait_for_url("**/account/two-factor/enrol")

    # The QR code is drawn in the page, at a size a phone camera reads.
    qr = page.locator("[data-testid=qr] svg")
    expect(qr).to_be_visible()
    box = qr.bounding_box()
    assert box and box["width"] >= 200 and box["height"] >= 200
    page.screenshot(path=str(SHOTS / "two-factor-enrol.png"), full_page=True)

    secret = page.inner_text("[data-testid=secret]").replace(" ", "")
    page.fill("#code", pyotp.TOTP(secret).now())
    page.click("text=Turn on two-factor sign-in")
    codes = page.locator("[data-testid=recovery-codes] li")
    expect(codes).to_have_count(10)
    page.screenshot(path=str(SHOTS / "two-factor-recovery-codes.png"), full_page=True)
    first_code = codes.first.inner_text().strip()

    # Another browser: the password, then the code step (with a recovery code here, so
    # the test need not wait for the next 30-second step).
    other = browser.new_context(viewport={"width": 390, "height": 844}).new_page()
    other.on("console", lambda m: refused.append(m.text) if CSP_WORDS.search(m.text) else None)
    other.goto(f"{base}/login")
    other.fill("#email", email)
    other.fill("#password", PASSWORD)
    other.click("button[type=submit]")
    other.wait_for_url("**/login/code")
    other.screenshot(path=str(SHOTS / "two-factor-code-step.png"), full_page=True)
    other.fill("#code", first_code)
    other.click("button[type=submit]")
    other.wait_for_url("**/admin/calendar/")
    expect(other.locator("text=Signed in with a recovery code: 9 left.")).to_be_visible()
    assert refused == []
    context.close()
    other.context.close()
