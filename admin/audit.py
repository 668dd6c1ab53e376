"""The audit trail, for the shop's owner: who refunded, cancelled, waived or steered what.

Read-only by construction: no create, edit, delete, actions or export, and every URL that
would write answers 403 whatever Flask-Admin allows (the database refuses such writes
too: migration 0008). Rows are the owner's shop's only, through ``ShopModelView``'s scoping,
and the staff filter offers only the emails found in that shop's trail.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import abort
from flask_admin import expose
from flask_admin.contrib.sqla.filters import FilterEqual
from flask_login import current_user
from markupsafe import Markup
from sqlalchemy import select
from werkzeug.routing import BuildError

from admin import display
from admin.base import OwnerOnly, ShopModelView
from admin.filters import local_date_filters
from recovery.audit import AuditAction
from recovery.db import db
from recovery.models import AuditEvent

ACTION_LABELS = {
    AuditAction.REFUND: "Refund",
    AuditAction.MARK_PAID: "Payment marked paid",
    AuditAction.MARK_FAILED: "Payment marked failed",
    AuditAction.DEPOSIT_AT_DESK: "Deposit paid at the desk",
    AuditAction.DEPOSIT_WAIVED: "Deposit waived",
    AuditAction.CANCEL: "Booking cancelled",
    AuditAction.MOVE: "Booking moved",
    AuditAction.BOOKING_EDITED: "Booking edited",
    AuditAction.RETRIGGER: "Opening re-triggered",
    AuditAction.EXPIRE_OPENING: "Opening expired",
    AuditAction.EXPIRE_OFFER: "Offer expired",
    AuditAction.BLOCK_ADDED: "Busy time added",
    AuditAction.BLOCK_CHANGED: "Busy time changed",
    AuditAction.BLOCK_DELETED: "Busy time deleted",
    AuditAction.SETTINGS_CHANGED: "Settings changed",
}

# Table name -> (admin endpoint with a details page or None, what staff call it).
TARGETS = {
    "appointments": ("appointments", "Booking"),
    "payments": ("payments", "Payment"),
    "slot_openings": ("openings", "Opening"),
    "slot_offers": ("offers", "Offer"),
    "busy_blocks": ("blocks", "Busy time"),
    "shops": (None, "Shop settings"),
    "staff_users": ("staff", "Staff account"),
}

STAFF_FILTER = "Staff member"


def action_label(action: str) -> str:
    """A readable name; actions added later (staff, two-factor) read from their value."""
    try:
        return ACTION_LABELS.get(AuditAction(action)) or action.replace("_", " ").capitalize()
    except ValueError:
        return action.replace("_", " ").capitalize()


# ---------------------------------------------------------------- values, readably


def _value(key: str, value: Any) -> str:
    """One stored value as staff read it: money in the shop's currency, times in its zone."""
    if value is None or value == "":
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if key.endswith("_minor") and isinstance(value, int):
        return display.money(value)
    if key.endswith("_id") and isinstance(value, int):
        return f"#{value}"
    if isinstance(value, list):
        return ", ".join(f"#{v}" if isinstance(v, int) else str(v) for v in value) or "none"
    if isinstance(value, str) and key.endswith("_at"):
        try:
            return display.local(datetime.fromisoformat(value))
        except ValueError:
            return value
    return str(value)


def _field(key: str) -> str:
    """``refunded_minor`` -> ``refunded``, ``resource_id`` -> ``resource``."""
    for suffix in ("_minor", "_id"):
        if key.endswith(suffix):
            key = key[: -len(suffix)]
    return key.replace("_", " ")


def _changes(view, context, model: AuditEvent, name) -> Markup:
    """``status: booked → cancelled`` lines, one per field that changed."""
    before, after = model.before or {}, model.after or {}
    keys = [*before, *(k for k in after if k not in before)]
    line = Markup('<div data-field="{}">{}: {} &rarr; {}</div>')
    return Markup("").join(
        line.format(key, _field(key), _value(key, before.get(key)), _value(key, after.get(key)))
        for key in keys
    )


def _action(view, context, model: AuditEvent, name) -> Markup:
    template = Markup('<span data-action="{}">{}</span>')
    return template.format(model.action, action_label(model.action))


def _target(view, context, model: AuditEvent, name) -> Markup | str:
    if not model.target_type:
        return ""
    endpoint, noun = TARGETS.get(model.target_type, (None, model.target_type))
    text = f"{noun} #{model.target_id}" if model.target_id is not None else noun
    if endpoint is None or model.target_id is None or model.action.endswith("_deleted"):
        return text
    try:
        return display.details_link(endpoint, model.target_id, text)
    except BuildError:  # a view this deployment does not register
        return text


def _staff_options() -> list[tuple[str, str]]:
    """The emails in this shop's trail (accounts since renamed or removed included)."""
    emails = db.session.scalars(
        select(AuditEvent.staff_email)
        .where(AuditEvent.shop_id == current_user.shop_id)
        .distinct()
        .order_by(AuditEvent.staff_email)
    )
    return [(email, email) for email in emails]


# ---------------------------------------------------------------- the view


class AuditView(OwnerOnly, ShopModelView):
    can_create = False
    can_edit = False
    can_delete = False
    can_export = False
    can_view_details = True
    action_disallowed_list = ["delete"]
    named_filter_urls = True
    page_size = 50

    column_list = ["created_at", "staff_email", "action", "target", "changes", "note"]
    column_details_list = ["id", *column_list]
    column_labels = {
        "id": "#",
        "created_at": "When",
        "staff_email": "Who",
        "action": "Action",
        "target": "Target",
        "changes": "Before → after",
        "note": "Note",
    }
    column_sortable_list = ["created_at"]
    column_default_sort = [("created_at", True), ("id", True)]
    column_formatters = {"action": _action, "target": _target, "changes": _changes}
    column_formatters_detail = column_formatters
    column_filters = [
        FilterEqual(
            AuditEvent.action,
            "Action",
            options=[(a.value, action_label(a.value)) for a in AuditAction],
        ),
        # Options are filled per request from the owner's shop (``_get_filter_groups``).
        FilterEqual(AuditEvent.staff_email, STAFF_FILTER),
        FilterEqual(
            AuditEvent.target_type,
            "Target",
            options=[(table, noun) for table, (_, noun) in TARGETS.items()],
        ),
        *local_date_filters(AuditEvent.created_at, "When"),
    ]

    def _get_filter_groups(self):
        # Flask-Admin builds filter options once, when the view is made, and shares them
        # between requests; the staff emails are the current shop's, so they are added to
        # this request's copy only.
        groups = super()._get_filter_groups()
        if groups and STAFF_FILTER in groups:
            for item in groups[STAFF_FILTER]:
                item["options"] = _staff_options()
        return groups

    # ---------------------------------------------------------------- read-only

    # Flask-Admin answers a disallowed write with a redirect and a flash; the trail
    # refuses outright, before any row is looked up.

    @expose("/new/", methods=("GET", "POST"))
    def create_view(self):
        abort(403)

    @expose("/edit/", methods=("GET", "POST"))
    def edit_view(self):
        abort(403)

    @expose("/delete/", methods=("POST",))
    def delete_view(self):
        abort(403)

    @expose("/action/", methods=("POST",))
    def action_view(self):
        abort(403)

    @expose("/export/<export_type>/")
    def export(self, export_type):
        abort(403)

    def get_actions_list(self):
        return [], {}

    def on_model_change(self, form, model, is_created):
        abort(403)

    def on_model_delete(self, model):
        abort(403)
