"""Staff sessions: a version per account, an idle limit, a clean session at sign-in.

Flask's session is a signed cookie, so the server has no list of sessions to delete.
Instead each signed-in cookie carries the account's ``session_version`` as it was at
sign-in, and the user loader accepts the cookie only while the account still has that
version and is active. Raising the version (``end_sessions``: signing out, an owner
resetting the password, disabling the account) ends every session of that account at its
next request, on every device.

The idle limit (``STAFF_IDLE_MINUTES``) is checked on the server from a last-seen time in
the session, read from the app clock: the cookie's own expiry (``PERMANENT_SESSION_LIFETIME``,
the same length) is only a hint the browser may ignore.
"""

from __future__ import annotations

from flask import Flask, current_app, flash, session
from flask_login import current_user, logout_user, user_logged_in

from recovery.db import db, utcnow
from recovery.models import StaffUser

SESSION_VERSION = "staff_version"
LAST_SEEN = "staff_seen"
# What Flask-Login itself keeps in the session (login_user writes these).
LOGIN_KEYS = frozenset({"_user_id", "_fresh", "_id", "_remember", "_remember_seconds"})

SIGNED_OUT = "You are signed out."
IDLE_SIGNED_OUT = "You were signed out after {} of inactivity. Sign in again to go on."


def end_sessions(user: StaffUser) -> None:
    """End every session of ``user`` (at their next request). Flushes, commits nothing."""
    # In SQL, so two at once both count: the version only ever moves on.
    user.session_version = StaffUser.session_version + 1
    db.session.flush()
    if current_user.is_authenticated and current_user.id == user.id:
        # The person doing it stays signed in here (an owner resetting their own password).
        session[SESSION_VERSION] = user.session_version


def is_current(user: StaffUser) -> bool:
    """Does this request's session still speak for ``user``? (The user loader asks.)"""
    return user.active and session.get(SESSION_VERSION) == user.session_version


def sign_out() -> None:
    """Sign the current user out here and on every other device (OWASP: sign-out ends the
    session on the server, not only in this browser)."""
    if current_user.is_authenticated:
        end_sessions(current_user._get_current_object())
        db.session.commit()
    logout_user()
    session.clear()
    flash(SIGNED_OUT, "info")


def _start_session(app: Flask, user: StaffUser, **_) -> None:
    """Runs right after ``login_user``, whichever view signed the user in.

    Keeps only what Flask-Login just wrote: whatever the browser carried before sign-in
    (an old CSRF token, half-finished sign-in steps) does not carry over into the signed-in
    session. A signed cookie cannot be fixated the way a server-side session id can (the
    new content means a new cookie), but its old content can, so it goes.
    """
    for key in [k for k in session if k not in LOGIN_KEYS and k != "_flashes"]:
        session.pop(key)
    session[SESSION_VERSION] = user.session_version
    session[LAST_SEEN] = utcnow().timestamp()
    # The cookie outlives the browser window, but not the idle limit (it is refreshed on
    # every response, so it expires that long after the last request).
    session.permanent = True


def _idle_limit_text(minutes: int) -> str:
    if minutes % 60 == 0:
        hours = minutes // 60
        return f"{hours} hour" + ("s" if hours != 1 else "")
    return f"{minutes} minute" + ("s" if minutes != 1 else "")


def expire_idle_session() -> None:
    """``before_request``: a signed-in session unused for longer than the idle limit is
    signed out; otherwise it was just used. The request then goes on signed out, so a
    staff page sends it to the login page, which shows why."""
    if "_user_id" not in session:
        return
    minutes = current_app.config["STAFF_IDLE_MINUTES"]
    now = utcnow().timestamp()
    seen = session.get(LAST_SEEN)
    if not isinstance(seen, int | float) or now - seen > minutes * 60:
        logout_user()
        session.clear()
        flash(IDLE_SIGNED_OUT.format(_idle_limit_text(minutes)), "info")
        return
    session[LAST_SEEN] = now


def init_sessions(app: Flask) -> None:
    app.config.setdefault("STAFF_IDLE_MINUTES", 720)
    app.before_request(expire_idle_session)
    user_logged_in.connect(_start_session, app)
