"""How the admin shows times, money and states: in the staff member's shop's zone and currency."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from flask import url_for
from flask_login import current_user
from markupsafe import Markup

from recovery.models import Shop
from recovery.payments.money import format_money

# Bootstrap 4 badge colour for every status the panel shows.
_BADGES = {
    # openings
    "open": "primary",
    "filled": "success",
    "expired": "secondary",
    # offers
    "sent": "info",
    "accepted": "success",
    "declined": "warning",
    # appointments
    "pending_payment": "warning",
    "booked": "success",
    "cancelled": "secondary",
    "completed": "dark",
    # payments and refunds
    "pending": "warning",
    "succeeded": "success",
    "failed": "danger",
    "canceled": "secondary",
    # messages
    "queued": "light",
    "sending": "light",
    "delivered": "success",
    "suppressed": "dark",
    "received": "info",
}


def shop() -> Shop:
    return current_user.shop


def zone(for_shop: Shop | None = None) -> ZoneInfo:
    return ZoneInfo((for_shop or shop()).timezone)


def local(value: datetime | None, fmt: str = "%a %d %b %Y, %H:%M") -> str:
    """A UTC timestamp as the shop's wall-clock time."""
    if value is None:
        return ""
    return value.astimezone(zone()).strftime(fmt)


def money(amount_minor: int | None, currency: str | None = None) -> str:
    if amount_minor is None:
        return ""
    current = shop()
    return format_money(amount_minor, currency or current.currency, current.locale)


def badge(status: str | None) -> Markup:
    if not status:
        return Markup("")
    colour = _BADGES.get(status, "light")
    template = Markup('<span class="badge badge-{}" data-status="{}">{}</span>')
    return template.format(colour, status, status.replace("_", " "))


def duration(delta: timedelta | None) -> str:
    """``1 h 05 min``, ``12 min``, ``40 s``: for the dashboard's median."""
    if delta is None:
        return "-"
    seconds = int(delta.total_seconds())
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60:02d} min"


# Dates staff can ask about. Beyond them a date is a typo, and near ``date.min`` or
# ``date.max`` the day arithmetic (a day more, a time zone) overflows.
MIN_YEAR, MAX_YEAR = 1900, 2200


def plausible_date(day: date) -> bool:
    return MIN_YEAR <= day.year <= MAX_YEAR


def local_day_bounds(day: date, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """The UTC instants at which a local calendar day starts and the next one starts."""
    start = datetime.combine(day, time(0), tzinfo=tz)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=tz)
    return start.astimezone(UTC), end.astimezone(UTC)


def to_utc(naive_local: datetime, tz: ZoneInfo) -> datetime:
    """A wall-clock time typed by staff, read in the shop's zone."""
    return naive_local.replace(tzinfo=tz).astimezone(UTC)


def datetime_type_formatter(view, value: datetime, name: str) -> str:
    """Flask-Admin type formatter: every datetime column in the shop's zone."""
    return local(value)


def details_link(endpoint: str, ident: int | None, text: str | None = None) -> Markup:
    """A link to another admin view's details page (``endpoint`` names the view)."""
    if ident is None:
        return Markup("")
    href = url_for(f"{endpoint}.details_view", id=ident)
    return Markup('<a href="{}">{}</a>').format(href, text or f"#{ident}")
