"""Staff login and logout (Flask-Login), with CSRF-protected forms."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, Flask, flash, redirect, render_template, request, url_for
from flask_login import LoginManager, current_user, login_user
from flask_wtf import FlaskForm
from sqlalchemy import func, select
from wtforms import EmailField, PasswordField
from wtforms.validators import DataRequired

from admin import throttle
from admin.sessions import init_sessions, is_current, sign_out
from admin.totp import is_enabled as two_factor_enabled
from admin.two_factor import ask_for_code
from recovery.db import db
from recovery.models import StaffUser

bp = Blueprint("auth", __name__, template_folder="templates")
login_manager = LoginManager()
login_manager.login_view = "auth.login"
login_manager.session_protection = "strong"


@login_manager.user_loader
def load_user(user_id: str) -> StaffUser | None:
    user = db.session.get(StaffUser, int(user_id))
    # Disabled, signed out elsewhere or password reset since this session began: gone.
    return user if user is not None and is_current(user) else None


class LoginForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired()])
    password = PasswordField("Password", validators=[DataRequired()])


def find_staff(email: str) -> StaffUser | None:
    query = select(StaffUser).where(func.lower(StaffUser.email) == email.strip().lower())
    return db.session.scalar(query)


def landing() -> str:
    """Where staff start: the calendar, as in the booking tools they know (the dashboard is
    one click away in the menu)."""
    return url_for("calendar.index")


def _safe_next(target: str | None) -> str:
    """Only follow a relative ``next`` inside this site (no open redirect)."""
    if target and not urlsplit(target).netloc and target.startswith("/"):
        return target
    return landing()


@bp.route("/login", methods=["GET", "POST"])
def login():
    if current_user.is_authenticated:
        return redirect(landing())
    form = LoginForm()
    if form.validate_on_submit():
        # Per account and per address; a throttled attempt never reaches the password.
        keys = throttle.sign_in_keys(form.email.data)
        wait = throttle.attempt(*keys)
        if wait:
            return throttle.throttled_response(wait)
        user = find_staff(form.email.data)
        # Same answer, and the same hashing time, for an unknown email and a wrong password.
        matches = throttle.password_matches(user, form.password.data)
        if user is not None and user.active and matches:
            throttle.succeeded(*keys)
            if two_factor_enabled(user):
                # Not signed in yet: a code from the app first (admin/two_factor.py).
                return ask_for_code(user, _safe_next(request.args.get("next")))
            login_user(user)
            return redirect(_safe_next(request.args.get("next")))
        throttle.failed(*keys)
        flash("Wrong email or password.", "danger")
        return render_template("admin_auth/login.html", form=form), 401
    return render_template("admin_auth/login.html", form=form)


@bp.post("/logout")
def logout():
    sign_out()  # here and on every other device
    return redirect(url_for("auth.login"))


def init_auth(app: Flask) -> None:
    login_manager.init_app(app)
    init_sessions(app)
    app.register_blueprint(bp)
