"""Owner-only pages: the shop's settings (recovery and refund policy). Staff accounts: staff.py."""

from __future__ import annotations

from zoneinfo import available_timezones

from babel import Locale, UnknownLocaleError
from babel.numbers import list_currencies
from flask import redirect, url_for
from flask_admin import expose
from flask_login import current_user
from sqlalchemy import select
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
from recovery import audit
from recovery.audit import AuditAction
from recovery.db import db
from recovery.messaging.outbox import default_sender
from recovery.messaging.phones import InvalidPhone, normalize_phone, region_for_locale
from recovery.models import Shop


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


SENDER_TAKEN = "Another shop already sends from that number: each shop needs its own."
SENDER_IS_DEFAULT = (
    "That is the deployment's shared number. Leave this empty to send from it, "
    "or enter a number of the shop's own."
)


def _sender_not_taken(form, field) -> None:
    """Inbound texts find their shop by the number they were sent to: one shop a number
    (``uq_shops_sms_from_number`` stands behind this check). The deployment's number is
    shared by the shops without one, so no shop may claim it as its own."""
    if not field.data:
        return
    if field.data == default_sender():
        raise ValidationError(SENDER_IS_DEFAULT)
    taken = db.session.scalar(
        select(Shop.id).where(Shop.sms_from_number == field.data, Shop.id != current_user.shop_id)
    )
    if taken is not None:
        raise ValidationError(SENDER_TAKEN)


# A light check (one @, a dot in the domain): the login form is the real test of it.
EMAIL = Regexp(r"^[^@\s]+@[^@\s]+\.[^@\s]+$", message="Not an email address.")


def _minutes(low: int, high: int):
    return [InputRequired(), NumberRange(low, high)]


class ShopSettingsView(OwnerOnly, ShopModelView):
    """One row: the owner's own shop. The list page goes straight to its form."""

    can_create = False
    can_delete = False
    # Two owners saving one number at once both pass the form's check; the index refuses one.
    integrity_messages = {"uq_shops_sms_from_number": SENDER_TAKEN}

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
        "require_two_factor",
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
        "require_two_factor": "Require two-factor sign-in for all staff",
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
        "require_two_factor": {
            "description": "Staff without it (you too) set it up at their next page, "
            "before anything else.",
        },
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

    def on_model_change(self, form, model, is_created):
        super().on_model_change(form, model, is_created)
        # Read before the flush (Flask-Admin commits right after this): the columns the
        # form changed, old and new. A save that changed nothing records nothing.
        before, after = audit.changes(model)
        if "require_two_factor" in after:
            # The shop's two-factor rule gets its own entry, easy to find in the trail.
            rule = "require_two_factor"
            action = AuditAction.TWO_FACTOR_CHANGED
            was, now = {rule: before.pop(rule)}, {rule: after.pop(rule)}
            audit.record(db.session, current_user, action, model, was, now, note="shop rule")
        if before or after:
            action = AuditAction.SETTINGS_CHANGED
            audit.record(db.session, current_user, action, model, before, after)
