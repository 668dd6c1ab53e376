"""The SMS log: every text in and out, with delivery status and estimated cost."""

from __future__ import annotations

from admin import display
from admin.base import ShopModelView
from admin.filters import local_date_filters, status_filter
from recovery.messaging import Purpose
from recovery.models import Direction, Message, MessageStatus


def _status(view, context, model, name):
    return display.badge(model.status)


def _cost(view, context, model, name):
    return display.money(model.cost_estimate_minor)


def _customer(view, context, model, name):
    if model.customer_id is None:
        return ""
    return display.details_link("customers", model.customer_id, model.customer.name)


def _direction(view, context, model, name):
    return "← in" if model.direction == Direction.INBOUND else "→ out"


class MessageView(ShopModelView):
    can_create = False
    can_edit = False
    can_delete = False
    named_filter_urls = True

    column_list = [
        "created_at",
        "direction",
        "customer",
        "from_number",
        "to_number",
        "body",
        "purpose",
        "status",
        "segments",
        "cost_estimate_minor",
    ]
    column_details_list = [*column_list, "provider_sid", "error", "sent_at", "slot_offer_id"]
    column_labels = {
        "created_at": "When",
        "from_number": "From",
        "to_number": "To",
        "cost_estimate_minor": "Est. cost",
        "provider_sid": "Provider id",
        "slot_offer_id": "Offer",
    }
    column_sortable_list = ["created_at", "status"]
    column_default_sort = [("created_at", True), ("id", True)]
    column_searchable_list = ["body", "from_number", "to_number"]
    column_formatters = {
        "status": _status,
        "cost_estimate_minor": _cost,
        "customer": _customer,
        "direction": _direction,
    }
    column_formatters_detail = column_formatters
    column_filters = [
        status_filter(Message.status, MessageStatus, "Delivery"),
        status_filter(Message.direction, Direction, "Direction"),
        status_filter(Message.purpose, Purpose, "Purpose"),
        *local_date_filters(Message.created_at, "Date"),
    ]
