"""Owner-only pages: the shop's settings (recovery and refund policy) and staff accounts."""

from __future__ import annotations

from zoneinfo import available_timezones

from babel import Locale, UnknownLocaleError
from babel.numbers import list_currencies
from flask import redirect, url_for
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
    Regexp,
    ValidationError,
)

from admin.base import OwnerOnly, ShopModelView
from admin.fields import NewPasswordField
from recovery.db import db
from recovery.messaging.phones import InvalidPhone, normalize_phone, region_for_locale
from recovery.models import Shop, StaffRole


def _timezone(form, field) -> None:
    if field.data not in available_timezones():
        raise ValidationError("Not a time zone: use an IANA name such as Europe/London.")


def _currency(form, field) -> None:
    field.data = (field.data or "").strip().upper()
    if field.data not in list_currencies():
        raise ValidationError("Not a currency code: use ISO 4217, such as GBP or EUR.")


def _locale(form, field) -> None:
    try:
        Locale.parse(field.data)
    except (ValueError, UnknownLocaleError):
        raise ValidationError("Not a locale: use a code such as en_GB.") from None


def _optional_phone(form, field) -> None:
    if not (field.data or "").strip():
        field.data = None
        return
    region = region_for_locale(form.locale.data or "en_GB")
    try:
        field.data = normalize_phone(field.data, region)
    except InvalidPhone as exc:
        raise ValidationError(str(exc)) from None


def _sender_not_taken(form, field) -> None:
    """Inbound texts find their shop by the number they were sent to: one shop a number."""
    if not field.data:
        return
    taken = db.session.scalar(
        select(Shop.id).where(Shop.sms_from_number == field.data, Shop.id != current_user.shop_id)
    )
    if taken is not None:
        raise ValidationError(
            "Another shop already sends from that number: each shop needs its own."
        )


# A light check (one @, a dot in the domain): the login form is the real test of it.
EMAIL = Regexp(r"^[^@\s]+@[^@\s]+\.[^@\s]+$", message="Not an email address.")


def _minutes(low: int, high: int):
    return [InputRequired(), NumberRange(low, high)]


class ShopSettingsView(OwnerOnly, ShopModelView):
    """One row: the owner's own shop. The list page goes straight to its form."""

    can_create = False
    can_delete = False

    column_list = ["name", "timezone", "currency", "offer_ttl_minutes", "payment_hold_minutes"]
    form_columns = [
        "name",
        "timezone",
        "currency",
        "locale",
        "sms_from_number",
        "contact_phone",
        "offer_ttl_minutes",
        "cooldown_hours",
        "min_lead_minutes",
        "payment_hold_minutes",
        "require_prior_settled_booking",
        "full_refund_hours",
        "late_refund_percent",
        "booking_hold_hours",
        "self_cancel_cutoff_hours",
        "send_confirmations",
        "send_reminders",
        "reminder_hours",
        "send_offers",
        "quiet_hours_start",
        "quiet_hours_end",
    ]
    column_labels = {
        "sms_from_number": "SMS sender number",
        "offer_ttl_minutes": "Offer lifetime (minutes)",
        "cooldown_hours": "Customer cooldown (hours)",
        "min_lead_minutes": "Minimum lead time (minutes)",
        "payment_hold_minutes": "Payment hold (minutes)",
        "require_prior_settled_booking": "Only offer to customers with a settled booking",
        "full_refund_hours": "Full refund if cancelled this many hours ahead",
        "late_refund_percent": "Refund (%) when cancelled later",
        "booking_hold_hours": "Deposit due within (hours) of booking",
        "self_cancel_cutoff_hours": "Customers can't cancel online within (hours) of the start",
        "send_confirmations": "Text booking confirmations",
        "send_reminders": "Text reminders",
        "reminder_hours": "Reminder (hours before)",
        "send_offers": "Text recovery offers",
        "quiet_hours_start": "Quiet hours start (shop time)",
        "quiet_hours_end": "Quiet hours end (shop time)",
    }
    form_args = {
        "name": {"validators": [DataRequired(), Length(max=120)]},
        "timezone": {"validators": [DataRequired(), _timezone]},
        "currency": {"validators": [DataRequired(), _currency]},
        "locale": {"validators": [DataRequired(), _locale]},
        "sms_from_number": {
            "validators": [_optional_phone, _sender_not_taken],
            "description": "Empty: the deployment's number.",
        },
        "contact_phone": {"validators": [_optional_phone]},
        "offer_ttl_minutes": {"validators": _minutes(1, 24 * 60)},
        "cooldown_hours": {"validators": [Optional(), NumberRange(0, 24 * 365)]},
        "min_lead_minutes": {"validators": [Optional(), NumberRange(0, 7 * 24 * 60)]},
        "payment_hold_minutes": {"validators": _minutes(1, 24 * 60)},
        "full_refund_hours": {"validators": [Optional(), NumberRange(0, 24 * 365)]},
        "late_refund_percent": {"validators": [Optional(), NumberRange(0, 100)]},
        "booking_hold_hours": {
            "validators": [InputRequired(), NumberRange(1, 24 * 14)],
            "description": "Unpaid by then (and never later than the start): released.",
        },
        "self_cancel_cutoff_hours": {"validators": [InputRequired(), NumberRange(0, 24 * 30)]},
        "reminder_hours": {
            "validators": [InputRequired(), NumberRange(0, 24 * 14)],
            "description": "0: no reminders.",
        },
        "quiet_hours_start": {
            "validators": [InputRequired()],
            "description": "Offers and reminders due in quiet hours wait until they end. "
            "The same start and end: no quiet hours.",
        },
        "quiet_hours_end": {"validators": [InputRequired()]},
    }

    def scope(self, query):
        return query.filter(Shop.id == current_user.shop_id)

    def get_count_query(self):
        return super(ShopModelView, self).get_count_query().filter(Shop.id == current_user.shop_id)

    @expose("/")
    def index_view(self):
        return redirect(url_for(".edit_view", id=current_user.shop_id))

    def get_save_return_url(self, model, is_created=False):
        return url_for(".edit_view", id=model.id)


class StaffView(OwnerOnly, ShopModelView):
    column_list = ["email", "name", "role", "active", "created_at"]
    column_details_list = column_list
    column_default_sort = "email"
    form_columns = ["email", "name", "role", "active", "password"]
    form_extra_fields = {
        "password": NewPasswordField(
            "Password",
            validators=[Optional(), Length(min=8, max=200)],
            description="At least 8 characters. Leave empty to keep the current one.",
        )
    }
    form_overrides = {"role": SelectField}
    form_args = {
        "email": {"validators": [DataRequired(), EMAIL, Length(max=254)]},
        "role": {"choices": [SelectChoice(r.value) for r in StaffRole]},
    }
    integrity_messages = {"uq_staff_users_email": "That email already has a staff account."}
    in_use_message = "This account has made changes (e.g. refunds): deactivate it instead."

    def on_model_change(self, form, model, is_created):
        super().on_model_change(form, model, is_created)
        model.email = model.email.strip().lower()
        if form.password.data:
            model.set_password(form.password.data)
        elif is_created:
            raise ValidationError("A new account needs a password.")
        if model.id == current_user.id and (not model.active or not model.is_owner):
            # Otherwise the shop could lose its last way into these pages.
            raise ValidationError("You cannot demote or deactivate your own account.")

    def on_model_delete(self, model):
        if model.id == current_user.id:
            raise ValidationError("You cannot delete your own account.")
