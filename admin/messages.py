"""The SMS log: every text in and out, with delivery status and estimated cost.

Above the list, what the shop's texts cost by purpose group for the dates the list is
filtered to (all dates when none): the dashboard's query (``recovery.messaging.costs``).
"""

from __future__ import annotations

from datetime import datetime

from flask_admin.contrib.sqla.filters import BaseSQLAFilter
from flask_login import current_user

from admin import display
from admin.base import ShopModelView
from admin.display import local_day_bounds
from admin.filters import (
    LocalDateFrom,
    LocalDateOn,
    LocalDateUntil,
    local_date_filters,
    status_filter,
)
from recovery.db import db
from recovery.messaging.costs import purpose_group_sql, sms_costs
from recovery.messaging.outbox import Purpose, PurposeGroup
from recovery.models import Direction, Message, MessageStatus


class PurposeGroupFilter(BaseSQLAFilter):
    """Texts of one purpose group, by the same mapping the cost summary sums."""

    def __init__(self) -> None:
        options = [(group.value, group.value.capitalize()) for group in PurposeGroup]
        super().__init__(Message.purpose, "Purpose group", options=options)

    def validate(self, value) -> bool:
        return value in {group.value for group in PurposeGroup}

    def apply(self, query, value, alias=None):
        return query.filter(purpose_group_sql() == value)

    def operation(self) -> str:
        return "equals"


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
        PurposeGroupFilter(),
        *local_date_filters(Message.created_at, "Date"),
    ]
    list_template = "admin/message_list.html"

    def render(self, template, **kwargs):
        if template == self.list_template:
            starts, ends, period = self._filtered_dates(kwargs.get("active_filters") or [])
            kwargs["sms_costs"] = sms_costs(db.session, current_user.shop_id, starts, ends)
            kwargs["sms_costs_period"] = period
            kwargs["display"] = display
        return super().render(template, **kwargs)

    def _filtered_dates(self, active) -> tuple[datetime | None, datetime | None, str]:
        """The instants the list's date filters bound it to, and how to say so.

        Only dates narrow the summary: it always counts what the shop sent and paid for,
        whatever direction, status or purpose the list itself is filtered to.
        """
        first = last = None  # local days, inclusive
        for index, _name, value in active:
            flt = self._filters[index]
            if isinstance(flt, LocalDateOn | LocalDateFrom):
                day = flt.clean(value)
                first = max(first, day) if first else day
            if isinstance(flt, LocalDateOn | LocalDateUntil):
                day = flt.clean(value)
                last = min(last, day) if last else day
        tz = display.zone()
        starts = local_day_bounds(first, tz)[0] if first else None
        ends = local_day_bounds(last, tz)[1] if last else None
        fmt = "%d %b %Y"
        if first and last:
            period = first.strftime(fmt)
            if first != last:
                period = f"{first.strftime(fmt)} to {last.strftime(fmt)}"
        elif first:
            period = f"from {first.strftime(fmt)}"
        elif last:
            period = f"until {last.strftime(fmt)}"
        else:
            period = "all dates"
        return starts, ends, period
