"""Two-factor sign-in pages: the code step after the password, enrolment, turning it off,
new recovery codes, the owner's reset, and the shop's "everyone enrols" rule.

The sign-in is two steps. ``auth.login`` checks the password; for an account with
two-factor sign-in on it does not sign in but calls ``ask_for_code``, which leaves a
*pending* marker in the (signed) session: the account, its session version and the time.
``/login/code`` then takes an authenticator code or a recovery code and signs in with
``login_user``, as the login view does (admin/sessions.py starts the session from there
and drops the marker). The marker lasts ``PENDING_SECONDS`` and dies with a new session
version (a password reset, a disabled account). Wrong codes count against the account in
admin/throttle.py, like wrong passwords.

When the shop requires two-factor sign-in, a signed-in member without it reaches no admin
page (``require_enrolment``, before every request) until they enrol.

Secrets, codes and recovery codes themselves: admin/totp.py.
"""

from __future__ import annotations

from flask import (
    Blueprint,
    Flask,
    abort,
    flash,
    make_response,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_login import current_user, login_required, login_user
from flask_wtf import FlaskForm
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired, Length

from admin import throttle, totp
from admin.sessions import end_sessions
from recovery.db import db, utcnow
from recovery.models import StaffUser

bp = Blueprint("two_factor", __name__, template_folder="templates")

PENDING = "two_factor_pending"
PENDING_SECONDS = 5 * 60

WRONG_CODE = "That code did not work. Check the time on your phone, or use a recovery code."
EXPIRED = "That took too long: sign in again."


class CodeForm(FlaskForm):
    code = StringField(
        "Code",
        validators=[DataRequired(), Length(max=40)],
        render_kw={"autocomplete": "one-time-code", "autocapitalize": "off", "spellcheck": "false"},
    )


class ConfirmForm(FlaskForm):
    """Turning two-factor sign-in off, or new recovery codes: a current code or the
    password first (OWASP: re-authenticate before changing a factor)."""

    code = StringField(
        "Code from your app",
        validators=[Length(max=40)],
        render_kw={"autocomplete": "one-time-code"},
    )
    password = PasswordField(
        "or your password",
        validators=[Length(max=200)],
        render_kw={"autocomplete": "current-password"},
    )


def _private(page):
    """Pages with a secret or recovery codes on them: never kept in a cache."""
    response = make_response(page)
    response.headers["Cache-Control"] = "no-store"
    return response


# ---------------------------------------------------------------- the sign-in step


def ask_for_code(user: StaffUser, next_url: str):
    """The password was right and the account has two-factor sign-in: ask for a code
    before signing in. ``next_url`` must already be a safe, local target."""
    session[PENDING] = {
        "user": user.id,
        "version": user.session_version,
        "at": utcnow().timestamp(),
        "next": next_url,
    }
    return redirect(url_for("two_factor.code"))


def _pending_user() -> tuple[StaffUser | None, str]:
    """The account waiting for its code, or None when there is none, it expired, or the
    account changed since the password step."""
    pending = session.get(PENDING)
    if not isinstance(pending, dict):
        return None, ""
    age = utcnow().timestamp() - float(pending.get("at", 0))
    user = db.session.get(StaffUser, int(pending.get("user", 0)))
    fresh = 0 <= age <= PENDING_SECONDS
    if (
        not fresh
        or user is None
        or not user.active
        or user.session_version != pending.get("version")
        or not totp.is_enabled(user)
    ):
        session.pop(PENDING, None)
        return None, ""
    return user, str(pending.get("next") or url_for("calendar.index"))


# Wrong codes (and wrong passwords on the confirm form) count per account in
# admin/throttle.py, whoever sends them: a stolen password must not buy unlimited guesses
# at six digits. Five free failures, then a doubling wait. (The password step already
# counts per client address too, and the blueprint has the route-level ceiling.)


def _attempt_wait(user: StaffUser) -> int:
    """0: the attempt may go ahead (then exactly one of the two below); else seconds."""
    return throttle.attempt(_throttle_key(user))


def _attempt_failed(user: StaffUser) -> None:
    throttle.failed(_throttle_key(user))


def _attempt_succeeded(user: StaffUser) -> None:
    throttle.succeeded(_throttle_key(user))


def _too_many(seconds: int) -> str:
    return f"Too many wrong codes. Try again in {throttle.wait_text(seconds)}."


def _throttle_key(user: StaffUser) -> str:
    return f"two-factor:account:{user.id}"


@bp.route("/login/code", methods=["GET", "POST"])
def code():
    if current_user.is_authenticated:
        return redirect(url_for("calendar.index"))
    user, next_url = _pending_user()
    if user is None:
        flash(EXPIRED, "info")
        return redirect(url_for("auth.login"))
    form = CodeForm()
    if form.validate_on_submit():
        wait = _attempt_wait(user)
        if wait:
            flash(_too_many(wait), "danger")
            page = render_template("admin_auth/code.html", form=form)
            return page, 429, {"Retry-After": str(wait)}
        used_recovery = not totp.looks_like_totp(form.code.data)
        if totp.check_second_factor(db.session, user, form.code.data):
            db.session.commit()  # the code's step, or the spent recovery code
            _attempt_succeeded(user)
            login_user(user)  # as auth.login does; the session starts afresh there
            if used_recovery:
                left = totp.recovery_codes_left(db.session, user)
                flash(f"Signed in with a recovery code: {left} left.", "warning")
            return redirect(next_url)
        db.session.rollback()  # releases the row lock; nothing was changed
        _attempt_failed(user)
        flash(WRONG_CODE, "danger")
        return render_template("admin_auth/code.html", form=form), 401
    return render_template("admin_auth/code.html", form=form)


# ---------------------------------------------------------------- the account's own pages


def _me() -> StaffUser:
    return current_user._get_current_object()


@bp.get("/account/two-factor")
@login_required
def manage():
    user = _me()
    return render_template(
        "admin_auth/two_factor.html",
        user=user,
        enabled=totp.is_enabled(user),
        required=user.shop.require_two_factor,
        codes_left=totp.recovery_codes_left(db.session, user),
        form=ConfirmForm(),
    )


@bp.route("/account/two-factor/enrol", methods=["GET", "POST"])
@login_required
def enrol():
    user = _me()
    if totp.is_enabled(user):
        return redirect(url_for("two_factor.manage"))
    secret = totp.pending_secret(user)
    db.session.commit()  # the same secret (and QR code) on a reload
    form = CodeForm()
    status = 200
    if form.validate_on_submit():
        wait = _attempt_wait(user)
        if wait:
            flash(_too_many(wait), "danger")
            status = 429
        else:
            codes = totp.confirm_enrolment(db.session, user, form.code.data)
            if codes is not None:
                end_sessions(user)  # other sessions signed in without the second factor
                db.session.commit()
                _attempt_succeeded(user)
                flash("Two-factor sign-in is on.", "success")
                return _recovery_codes_page(codes)
            db.session.rollback()
            _attempt_failed(user)
            flash(WRONG_CODE, "danger")
            status = 401
    uri = totp.provisioning_uri(user, secret)
    page = render_template(
        "admin_auth/enrol.html",
        form=form,
        qr=totp.qr_svg(uri),
        secret=totp.format_secret(secret),
        required=totp.needs_enrolment(user),
        user=user,
    )
    return _private(page), status


def _recovery_codes_page(codes: list[str]):
    return _private(render_template("admin_auth/recovery_codes.html", codes=codes))


def _reauthenticated(user: StaffUser, form: ConfirmForm) -> int | bool:
    """True for a current code or the password; False for neither; the seconds to wait
    when throttled."""
    wait = _attempt_wait(user)
    if wait:
        return wait
    code = (form.code.data or "").strip()
    if (code and totp.verify_totp(db.session, user, code)) or (
        form.password.data and user.check_password(form.password.data)
    ):
        _attempt_succeeded(user)
        return True
    db.session.rollback()
    _attempt_failed(user)
    return False


def _confirmed_or_refused(user: StaffUser, form: ConfirmForm):
    """None to go on; otherwise the response refusing it."""
    if not form.validate_on_submit():
        abort(400)
    outcome = _reauthenticated(user, form)
    if outcome is True:
        return None
    message = "Enter a current code or your password." if outcome is False else None
    flash(message or _too_many(outcome), "danger")
    return redirect(url_for("two_factor.manage"))


@bp.post("/account/two-factor/recovery-codes")
@login_required
def new_recovery_codes():
    user = _me()
    if not totp.is_enabled(user):
        return redirect(url_for("two_factor.manage"))
    refused = _confirmed_or_refused(user, ConfirmForm())
    if refused is not None:
        return refused
    codes = totp.regenerate_recovery_codes(db.session, user)
    db.session.commit()
    flash("New recovery codes: the old ones no longer work.", "success")
    return _recovery_codes_page(codes)


@bp.post("/account/two-factor/disable")
@login_required
def disable():
    user = _me()
    if not totp.is_enabled(user):
        return redirect(url_for("two_factor.manage"))
    refused = _confirmed_or_refused(user, ConfirmForm())
    if refused is not None:
        return refused
    totp.turn_off(db.session, user, user, note="turned off by the user")
    db.session.commit()
    flash("Two-factor sign-in is off.", "success")
    return redirect(url_for("two_factor.manage"))


# ---------------------------------------------------------------- the owner's reset


def reset_two_factor(actor: StaffUser, users: list[StaffUser]) -> None:
    """The owner turns two-factor sign-in off for staff who lost their phone (the Staff
    list's action). They sign in with their password and enrol again; their sessions end.
    Not for the owner's own account: that needs a code or the password (the page above)."""
    done = 0
    for user in users:
        if user.id == actor.id:
            flash("Turn off your own two-factor sign-in from its page.", "error")
            continue
        if not totp.is_enabled(user) and user.totp_secret is None:
            continue
        totp.turn_off(db.session, actor, user, note="reset by the owner")
        end_sessions(user)
        done += 1
    db.session.commit()
    if done:
        noun = "account" if done == 1 else "accounts"
        flash(f"Two-factor sign-in reset for {done} {noun}; they enrol again.", "success")


# ---------------------------------------------------------------- the shop's rule


def _is_admin_page() -> bool:
    path = request.path
    if path != "/admin" and not path.startswith("/admin/"):
        return False
    # The stylesheets the enrolment page itself uses.
    return not (request.endpoint or "").endswith(".static")


def require_enrolment():
    """``before_request``: with the shop's rule on, no admin page until enrolled."""
    if not _is_admin_page() or not current_user.is_authenticated:
        return None
    if totp.needs_enrolment(current_user):
        return redirect(url_for("two_factor.enrol"))
    return None


def init_two_factor(app: Flask) -> None:
    app.register_blueprint(bp)
    app.before_request(require_enrolment)
