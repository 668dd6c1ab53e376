"""Staff sessions: signing out ends them everywhere, they end after the idle limit, and
sign-in starts a clean session whose cookie does not outlive that limit."""

from __future__ import annotations

from datetime import timedelta

import pytest

from admin.sessions import LAST_SEEN, SESSION_VERSION
from recovery.config import ConfigError, from_environment
from recovery.models import StaffUser
from tests.admin_support import *  # noqa: F403 (the shared fixtures)
from tests.admin_support import forget_cached_request_state, login, post


def get(client, url: str = "/admin/"):
    """A request as this client alone (the test's app context outlives requests)."""
    forget_cached_request_state()
    return client.get(url)


def signed_in(client) -> bool:
    return get(client).status_code == 200


def test_signing_out_ends_the_users_other_sessions(app, session, shop_a):
    laptop, phone = app.test_client(), app.test_client()
    assert login(laptop, shop_a.owner.email).status_code == 302
    assert login(phone, shop_a.owner.email).status_code == 302
    assert signed_in(laptop) and signed_in(phone)

    response = post(laptop, "/logout", follow_redirects=True)
    assert "You are signed out." in response.get_data(as_text=True)

    assert not signed_in(laptop)
    response = get(phone)
    assert response.status_code == 302 and "/login?next=" in response.location
    # Other accounts are untouched.
    clerk = app.test_client()
    assert login(clerk, shop_a.clerk.email).status_code == 302
    assert signed_in(clerk)


def test_signing_in_again_after_signing_out_works(app, session, shop_a):
    client = app.test_client()
    assert login(client, shop_a.owner.email).status_code == 302
    post(client, "/logout")
    assert login(client, shop_a.owner.email).status_code == 302
    assert signed_in(client)


def test_a_session_ends_after_the_idle_limit(app, session, clock, shop_a):
    assert app.config["STAFF_IDLE_MINUTES"] == 12 * 60  # the default
    client = app.test_client()
    assert login(client, shop_a.owner.email).status_code == 302

    # Each request restarts the idle clock: a day of steady use keeps the session.
    for _ in range(3):
        clock.advance(hours=11, minutes=59)
        assert signed_in(client)

    clock.advance(hours=12, minutes=1)
    response = get(client, "/admin/calendar/")
    assert response.status_code == 302 and "/login?next=" in response.location
    page = client.get(response.location).get_data(as_text=True)
    assert "You were signed out after 12 hours of inactivity." in page
    # Gone for good, not only for that request.
    assert not signed_in(client)
    assert login(client, shop_a.owner.email).status_code == 302
    assert signed_in(client)


def test_sign_in_starts_a_clean_session_that_expires_with_the_idle_limit(app, session, shop_a):
    client = app.test_client()
    with client.session_transaction() as before:
        before["planted"] = "left by someone else"
    response = login(client, shop_a.owner.email)
    assert response.status_code == 302
    # The cookie is persistent (it has an expiry) rather than a browser-session cookie.
    cookie = response.headers["Set-Cookie"]
    assert "Expires=" in cookie and "HttpOnly" in cookie
    with client.session_transaction() as after:
        assert "planted" not in after
        assert after[SESSION_VERSION] == shop_a.owner.session_version
        assert LAST_SEEN in after
        assert after.permanent
    assert app.permanent_session_lifetime == timedelta(hours=12)


def test_a_session_from_an_older_version_is_refused(app, session, shop_a):
    """A cookie signed before this change (or before a version bump) names no version."""
    client = app.test_client()
    assert login(client, shop_a.owner.email).status_code == 302
    with client.session_transaction() as stale:
        stale.pop(SESSION_VERSION)
    assert not signed_in(client)


def test_signing_out_moves_the_version_on_in_the_database(app, session, shop_a):
    client = app.test_client()
    assert login(client, shop_a.owner.email).status_code == 302
    version = shop_a.owner.session_version
    post(client, "/logout")
    session.expire_all()
    assert session.get(StaffUser, shop_a.owner.id).session_version == version + 1


def test_idle_limit_comes_from_the_environment(tmp_path):
    config = from_environment({"STAFF_IDLE_MINUTES": "30", "SECRET_KEY": "k"}, tmp_path)
    assert config["STAFF_IDLE_MINUTES"] == 30
    assert config["PERMANENT_SESSION_LIFETIME"] == timedelta(minutes=30)
    default = from_environment({"SECRET_KEY": "k"}, tmp_path)
    assert default["STAFF_IDLE_MINUTES"] == 720


@pytest.mark.parametrize("value", ["0", "-5", "twelve hours", "1.5"])
def test_a_wrong_idle_limit_refuses_to_start(tmp_path, value):
    with pytest.raises(ConfigError, match="STAFF_IDLE_MINUTES"):
        from_environment({"STAFF_IDLE_MINUTES": value, "SECRET_KEY": "k"}, tmp_path)
