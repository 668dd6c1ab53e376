"""What a shop sells and where: services (with their deposit policy) and resources."""

from __future__ import annotations

import hmac
import secrets

from flask import abort, current_app, flash, redirect, request, session, url_for
from flask_admin import expose
from flask_login import current_user
from sqlalchemy import select
from wtforms import SelectField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import (
    DataRequired,
    InputRequired,
    Length,
    NumberRange,
    Optional,
    ValidationError,
)

from admin import display
from admin.base import ShopModelView
from admin.fields import FormOnlyIntegerField, FormOnlyMoneyField, MoneyField
from recovery.availability.calendars import google, ics
from recovery.availability.calendars import sync as calendar_sync
from recovery.availability.calendars.secrets import InvalidToken, box_from_config
from recovery.db import db
from recovery.models import CalendarConnection, CalendarProvider, DepositKind
from recovery.payments.money import deposit_minor

DEPOSIT_CHOICES = [
    SelectChoice(DepositKind.NONE.value, "No deposit"),
    SelectChoice(DepositKind.FIXED.value, "Fixed amount"),
    SelectChoice(DepositKind.PERCENT.value, "Percentage of the price"),
    SelectChoice(DepositKind.FULL.value, "Full prepayment"),
]


def _price(view, context, model, name):
    return display.money(model.price_minor)


def _deposit(view, context, model, name):
    kind = DepositKind(model.deposit_kind)
    if kind is DepositKind.NONE:
        return "none"
    amount = display.money(deposit_minor(model))
    if kind is DepositKind.PERCENT:
        return f"{model.deposit_value}% ({amount})"
    if kind is DepositKind.FULL:
        return f"full prepayment ({amount})"
    return amount


class ServiceView(ShopModelView):
    column_list = ["name", "duration_minutes", "price_minor", "deposit", "active"]
    column_details_list = ["id", *column_list]
    column_labels = {
        "duration_minutes": "Minutes",
        "price_minor": "Price",
        "deposit_kind": "Deposit policy",
    }
    column_sortable_list = ["name", "duration_minutes", "price_minor"]
    column_default_sort = "name"
    column_formatters = {"price_minor": _price, "deposit": _deposit}
    column_formatters_detail = column_formatters

    form_columns = [
        "name",
        "duration_minutes",
        "price_minor",
        "deposit_kind",
        "deposit_amount",
        "deposit_percent",
        "active",
    ]
    form_overrides = {"price_minor": MoneyField, "deposit_kind": SelectField}
    form_extra_fields = {
        "deposit_amount": FormOnlyMoneyField(
            "Deposit amount", validators=[Optional()], description="For a fixed deposit."
        ),
        "deposit_percent": FormOnlyIntegerField(
            "Deposit %",
            validators=[Optional(), NumberRange(0, 100)],
            description="For a percentage deposit (0-100).",
        ),
    }
    form_args = {
        "name": {"validators": [DataRequired(), Length(max=120)]},
        "duration_minutes": {"validators": [DataRequired(), NumberRange(min=1, max=24 * 60)]},
        "price_minor": {"label": "Price", "validators": [InputRequired()]},
        "deposit_kind": {"label": "Deposit policy", "choices": DEPOSIT_CHOICES},
    }
    integrity_messages = {"uq_services_shop_id": "The shop already has a service of that name."}
    in_use_message = "This service has bookings: mark it inactive instead."

    def on_form_prefill(self, form, id):
        model = self.get_one(id)
        if model.deposit_kind == DepositKind.FIXED:
            form.deposit_amount.process_data(model.deposit_value)
        elif model.deposit_kind == DepositKind.PERCENT:
            form.deposit_percent.data = model.deposit_value

    def on_model_change(self, form, model, is_created):
        super().on_model_change(form, model, is_created)
        kind = DepositKind(model.deposit_kind)
        if kind is DepositKind.FIXED:
            amount = form.deposit_amount.minor()
            if amount is None:
                raise ValidationError("A fixed deposit needs an amount.")
            model.deposit_value = amount
        elif kind is DepositKind.PERCENT:
            if form.deposit_percent.data is None:
                raise ValidationError("A percentage deposit needs a percentage (0-100).")
            model.deposit_value = form.deposit_percent.data
        else:
            model.deposit_value = 0


class ResourceView(ShopModelView):
    column_list = ["name", "active"]
    column_details_list = ["id", "name", "active"]
    column_default_sort = "name"
    form_columns = ["name", "active"]
    form_args = {"name": {"validators": [DataRequired(), Length(max=120)]}}
    integrity_messages = {"uq_resources_shop_id": "The shop already has a resource of that name."}
    in_use_message = "This resource has bookings: mark it inactive instead."

    # ---------------------------------------------------------------- calendar sync
    # The resource's page shows its calendar connection to all staff; connecting,
    # disconnecting and syncing are the owner's. Every POST carries the CSRF token
    # (CSRFProtect covers the whole app); the OAuth callback is a GET that Google sends
    # the browser to, so it is bound to the session by a random state compared in
    # constant time, and to the owner and resource that started it.

    details_template = "admin/resource_details.html"
    OAUTH_SESSION_KEY = "calendar_oauth"

    def render(self, template, **kwargs):
        if template == self.details_template and kwargs.get("model") is not None:
            kwargs.update(self._calendar_context(kwargs["model"]))
        return super().render(template, **kwargs)

    def _calendar_context(self, resource) -> dict:
        config = current_app.config
        return {
            "calendar": _connection_of(resource.id),
            "google_enabled": google.settings_from_config(config) is not None,
            "ics_enabled": box_from_config(config) is not None,
            "can_manage_calendar": current_user.is_owner,
            "display": display,
        }

    def _owned_resource(self, raw_id):
        if not current_user.is_owner:
            abort(403)
        return self.get_one(raw_id)

    def _back(self, resource_id: int):
        return redirect(url_for(".details_view", id=resource_id))

    def _redirect_uri(self) -> str:
        base = current_app.config.get("PUBLIC_BASE_URL")
        path = url_for(".calendar_callback")
        return base + path if base else url_for(".calendar_callback", _external=True)

    @expose("/calendar/google/", methods=("POST",))
    def calendar_google(self):
        resource = self._owned_resource(request.form.get("id"))
        settings = google.settings_from_config(current_app.config)
        if settings is None:
            abort(404)
        state = secrets.token_urlsafe(32)
        url, verifier = google.authorization_url(settings, self._redirect_uri(), state)
        session[self.OAUTH_SESSION_KEY] = {
            "state": state,
            "verifier": verifier,
            "resource_id": resource.id,
            "staff_id": current_user.id,
        }
        return redirect(url)

    @expose("/calendar/callback/")
    def calendar_callback(self):
        pending = session.pop(self.OAUTH_SESSION_KEY, None)
        state = request.args.get("state", "")
        if not pending or not hmac.compare_digest(pending["state"].encode(), state.encode()):
            abort(400)
        if pending["staff_id"] != current_user.id:
            abort(400)
        resource = self._owned_resource(pending["resource_id"])
        settings = google.settings_from_config(current_app.config)
        if settings is None:
            abort(404)
        if request.args.get("error") or not request.args.get("code"):
            flash("Google Calendar was not connected: access was not granted.", "warning")
            return self._back(resource.id)
        try:
            token = google.exchange_code(
                settings, self._redirect_uri(), request.args["code"], pending["verifier"]
            )
        except google.GoogleError as exc:
            flash(f"Google Calendar was not connected. {exc}", "error")
            return self._back(resource.id)
        box = box_from_config(current_app.config)
        calendar_sync.connect(
            db.session, resource, CalendarProvider.GOOGLE, box.encrypt(token), current_user.id
        )
        db.session.commit()
        flash("Google Calendar connected: its busy times are being synced.", "success")
        return self._back(resource.id)

    @expose("/calendar/ics/", methods=("POST",))
    def calendar_ics(self):
        resource = self._owned_resource(request.form.get("id"))
        box = box_from_config(current_app.config)
        if box is None:
            abort(404)
        try:
            url = ics.normalize_url(request.form.get("url", ""))
        except ics.FeedError as exc:
            flash(str(exc), "error")
            return self._back(resource.id)
        calendar_sync.connect(
            db.session, resource, CalendarProvider.ICS, box.encrypt(url), current_user.id
        )
        db.session.commit()
        flash("Calendar feed saved: its busy times are being synced.", "success")
        return self._back(resource.id)

    @expose("/calendar/sync/", methods=("POST",))
    def calendar_sync_now(self):
        resource = self._owned_resource(request.form.get("id"))
        conn = _connection_of(resource.id)
        if conn is None:
            abort(404)
        calendar_sync.request_sync(db.session, conn.id)
        db.session.commit()
        flash("Sync queued.", "success")
        return self._back(resource.id)

    @expose("/calendar/disconnect/", methods=("POST",))
    def calendar_disconnect(self):
        resource = self._owned_resource(request.form.get("id"))
        conn = _connection_of(resource.id)
        if conn is None:
            abort(404)
        config = current_app.config
        settings, box = google.settings_from_config(config), box_from_config(config)
        if conn.provider == CalendarProvider.GOOGLE and settings and box:
            try:
                revoked = google.revoke(settings, box.decrypt(conn.secret))
            except InvalidToken:
                revoked = False
            if not revoked:
                flash(
                    "Google could not be told to revoke access; remove it in your "
                    "Google account's security settings.",
                    "warning",
                )
        removed = calendar_sync.disconnect(db.session, conn.id)
        db.session.commit()
        flash(f"Calendar disconnected; {removed} synced busy block(s) removed.", "success")
        return self._back(resource.id)


def _connection_of(resource_id: int) -> CalendarConnection | None:
    return db.session.scalar(
        select(CalendarConnection).where(CalendarConnection.resource_id == resource_id)
    )
