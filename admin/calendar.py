"""The calendar: a day or a week of the staff member's shop, one column (or row) per resource.

It is a server-rendered grid (Jinja and CSS grid, no JavaScript) rather than a JavaScript
calendar library such as FullCalendar. Everything it shows is read-only and each item is a
link to its own page, so a library's drag and drop and event API would buy little; without
one there is no bundle to vendor and keep patched, nothing to build, no inline script for
the Content-Security-Policy to allow, and the page works as soon as the HTML arrives, on a
phone too. Items are placed on quarter-hour rows by CSS classes (``calendar.css``), not
inline styles, for the same policy.

Times are the shop's wall-clock times: rows are real quarter hours counted from the first
one shown, so a day on which the clocks change has 23 or 25 hours and an hour label shows
up twice (marked with the zone's abbreviation) or not at all.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from flask import request, url_for
from flask_admin import BaseView, expose
from flask_login import current_user
from markupsafe import Markup, escape
from werkzeug.routing import BuildError

from admin import display
from admin.base import MAX_ID, StaffOnly
from recovery.availability.calendar import (
    BlockItem,
    BookingItem,
    CalendarItems,
    OpeningItem,
    ResourceRow,
    items_between,
    shop_resources,
)
from recovery.db import db, utcnow
from recovery.models import BlockSource

ROW = timedelta(minutes=15)
ROWS_PER_HOUR = 4
# The longest day is 25 hours (when the clocks go back); calendar.css has a class for each
# row up to here, and for each lane up to MAX_LANES.
MAX_ROWS = 25 * ROWS_PER_HOUR
MAX_LANES = 6
# The hours a day shows when nothing falls outside them (the shop's wall clock).
DAY_OPENS, DAY_CLOSES = time(8, 0), time(20, 0)
VIEWS = ("day", "week")

PLAIN_TEXT = {"Content-Type": "text/plain; charset=utf-8"}
DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")
ID_RE = re.compile(r"\d{1,10}")

STATUS_LABELS = {
    "pending_payment": "Pending payment",
    "booked": "Booked",
    "completed": "Completed",
}
OPENING_TITLES = {"open": "Open slot", "filled": "Filled slot", "expired": "Expired slot"}
SOURCE_LABELS = {
    BlockSource.MANUAL: "Busy (manual)",
    BlockSource.GOOGLE: "Busy (Google Calendar)",
    BlockSource.ICS: "Busy (calendar feed)",
}
DASH = "\u2013"  # an en dash, between times and dates
# The key of the lane (day) or row (week) for blocks that close the whole shop.
WHOLE_SHOP = "shop"


class BadQuery(ValueError):
    """The query string asks for no calendar; the message says what to fix."""


@dataclass(frozen=True)
class Query:
    view: str
    day: date
    resource_id: int | None


def parse_query(args: Mapping[str, str], today: date) -> Query:
    view = args.get("view") or "day"
    if view not in VIEWS:
        raise BadQuery("view must be day or week.")
    raw_date = args.get("date") or ""
    if raw_date:
        if not DATE_RE.fullmatch(raw_date):
            raise BadQuery("date must look like 2026-01-31.")
        try:
            day = date.fromisoformat(raw_date)
        except ValueError:
            raise BadQuery("date must look like 2026-01-31.") from None
        if not display.plausible_date(day):
            raise BadQuery(f"Pick a date between {display.MIN_YEAR} and {display.MAX_YEAR}.")
    else:
        day = today
    raw_resource = args.get("resource") or ""
    resource_id = None
    if raw_resource:
        if not ID_RE.fullmatch(raw_resource) or not 1 <= int(raw_resource) <= MAX_ID:
            raise BadQuery("resource must be a resource's number.")
        resource_id = int(raw_resource)
    return Query(view, day, resource_id)


# ---------------------------------------------------------------- what each item says


@dataclass(slots=True)
class Entry:
    """One item as the page shows it (in a day column or a week cell)."""

    kind: str  # booking, opening, block
    id: int
    status: str  # the booking's or opening's status, or the block's source
    css: str
    href: str
    when: str
    title: str
    detail: str
    label: str  # the status in words: colour is never the only cue
    starts_at: datetime
    ends_at: datetime
    # Placement in the day grid (rows and lanes count from 1, as CSS grid lines do).
    row: int = 1
    span: int = 1
    lane: int = 1
    width: int = 1

    # The markup is built here rather than in a template: a busy week holds a few thousand
    # items, and rendering each through Jinja took most of the request's time (B7).

    def text_html(self) -> str:
        """The item's words. Its status is in words too (a tag, or for screen readers), so
        colour is never the only cue."""
        html = f'<span class="cal-when">{self.when}</span>'
        html += f' <span class="cal-what">{escape(self.title)}</span>'
        if self.detail:
            html += f' <span class="cal-detail">{escape(self.detail)}</span>'
        if self.kind == "opening" or self.status == "booked":
            return html + f' <span class="sr-only">{escape(self.label)}</span>'
        return html + f' <span class="cal-tag">{escape(self.label)}</span>'

    def link(self, placed: bool) -> str:
        """A link to the item's page; ``placed`` in the day's grid, or in a week's list."""
        classes = f"cal-item {self.css}"
        tooltip = ""
        if placed:
            classes += f" cal-r{self.row} cal-s{self.span} cal-l{self.lane} cal-w{self.width}"
            # A short item is cut off in the grid: its tooltip has the whole text.
            detail = f", {self.detail}" if self.detail else ""
            tooltip = f' title="{escape(f"{self.when} {self.title}{detail} ({self.label})")}"'
        return (
            f'<a class="{classes}" href="{escape(self.href)}" data-kind="{self.kind}" '
            f'data-id="{self.id}" data-status="{escape(self.status)}"{tooltip}>'
            f"{self.text_html()}</a>"
        )


class Describer:
    """Turns the domain's items into entries: text in the shop's zone, a link, CSS classes."""

    def __init__(self, tz: ZoneInfo, hrefs: Mapping[str, str]) -> None:
        self.tz = tz
        self.hrefs = hrefs

    def hm(self, value: datetime) -> str:
        return value.astimezone(self.tz).strftime("%H:%M")

    def when(self, starts: datetime, ends: datetime, day_start: datetime, day_end: datetime):
        if starts <= day_start and ends >= day_end:
            return "All day"
        if starts < day_start:
            return f"until {self.hm(ends)}"
        if ends > day_end:
            return f"from {self.hm(starts)}"
        return f"{self.hm(starts)}{DASH}{self.hm(ends)}"

    def entry(self, item, day_start: datetime, day_end: datetime) -> Entry:
        when = self.when(item.starts_at, item.ends_at, day_start, day_end)
        if isinstance(item, BookingItem):
            return Entry(
                "booking",
                item.id,
                item.status,
                f"cal-booking cal-booking-{item.status}",
                self.hrefs["booking"] + str(item.id),
                when,
                item.customer,
                item.service,
                STATUS_LABELS.get(item.status, item.status.replace("_", " ")),
                item.starts_at,
                item.ends_at,
            )
        if isinstance(item, OpeningItem):
            return Entry(
                "opening",
                item.id,
                item.status,
                f"cal-opening cal-opening-{item.status}",
                self.hrefs["opening"] + str(item.id),
                when,
                OPENING_TITLES.get(item.status, f"Slot {item.status}"),
                self._opening_detail(item, day_start, day_end),
                f"Slot opening, {item.status}",
                item.starts_at,
                item.ends_at,
            )
        assert isinstance(item, BlockItem)
        synced = item.source != BlockSource.MANUAL
        return Entry(
            "block",
            item.id,
            item.source,
            "cal-block cal-block-synced" if synced else "cal-block cal-block-manual",
            self.hrefs["block_synced" if synced else "block"] + str(item.id),
            when,
            item.reason or "Busy",
            "",  # the lane or row says whose time it is
            SOURCE_LABELS.get(item.source, f"Busy ({item.source})"),
            item.starts_at,
            item.ends_at,
        )

    def _opening_detail(self, item: OpeningItem, day_start: datetime, day_end: datetime) -> str:
        if item.offered_to and item.offer_expires_at is not None:
            until = item.offer_expires_at
            shown = (
                self.hm(until)
                if day_start <= until < day_end
                else until.astimezone(self.tz).strftime("%a %d %b %H:%M")
            )
            return f"Offered to {item.offered_to} until {shown}"
        if item.status == "open":
            return f"{item.service}: no offer out"
        if item.status == "expired" and item.outcome_note:
            return item.outcome_note
        return item.service


def all_items(items: CalendarItems) -> list:
    """Bookings, openings and blocks together, earliest first."""
    merged: list = [*items.blocks, *items.openings, *items.bookings]
    merged.sort(key=lambda item: item.starts_at)
    return merged


def column_key(item) -> int | str:
    return WHOLE_SHOP if item.resource_id is None else item.resource_id


def shown_resources(
    resources: list[ResourceRow], used: Iterable[int | str], resource_id: int | None
) -> list[ResourceRow]:
    """The filtered resource alone; else the active ones and any other that has items."""
    if resource_id is not None:
        return [r for r in resources if r.id == resource_id]
    used = set(used)
    return [r for r in resources if r.active or r.id in used]


# ---------------------------------------------------------------- the day


@dataclass
class Column:
    key: int | str
    name: str
    entries: list[Entry] = field(default_factory=list)
    lanes: int = 1

    @property
    def html(self) -> Markup:
        # Safe: link() escapes every text it puts in.
        return Markup("".join(entry.link(placed=True) for entry in self.entries))  # noqa: S704


@dataclass
class DayGrid:
    rows: int
    hours: list[tuple[int, int, str]]  # (row, rows it covers, label)
    columns: list[Column]
    first: str  # the first and last times shown, for the page's caption
    last: str

    @property
    def empty(self) -> bool:
        return not self.columns


def floor_hour(value: datetime, tz: ZoneInfo) -> datetime:
    local = value.astimezone(tz)  # carries the fold, so an hour that repeats stays itself
    return local.replace(minute=0, second=0, microsecond=0).astimezone(UTC)


def ceil_hour(value: datetime, tz: ZoneInfo) -> datetime:
    floored = floor_hour(value, tz)
    return floored if floored == value else floored + timedelta(hours=1)


def day_span(day: date, tz: ZoneInfo, items: list) -> tuple[datetime, datetime]:
    """The stretch of the day to draw: opening hours, widened to whole hours around every
    item, never past the day's own bounds."""
    day_start, day_end = display.local_day_bounds(day, tz)
    first = datetime.combine(day, DAY_OPENS, tzinfo=tz).astimezone(UTC)
    last = datetime.combine(day, DAY_CLOSES, tzinfo=tz).astimezone(UTC)
    for item in items:
        first = min(first, floor_hour(max(item.starts_at, day_start), tz))
        last = max(last, ceil_hour(min(item.ends_at, day_end), tz))
    return max(first, day_start), min(last, day_end)


def rows_down(delta: timedelta) -> int:
    return delta // ROW


def rows_up(delta: timedelta) -> int:
    return -(-delta // ROW)


def place(entry: Entry, span_start: datetime, rows: int) -> None:
    """The rows an entry covers: its start rounded down, its end up, at least one row."""
    top = min(max(0, rows_down(entry.starts_at - span_start)), rows - 1)
    bottom = min(rows, rows_up(entry.ends_at - span_start))
    entry.row, entry.span = top + 1, max(1, bottom - top)


def assign_lanes(entries: list[Entry]) -> int:
    """Side by side where entries share a row: each takes the first free lane, then widens
    to the right over lanes that stay free for its rows. Returns the number of lanes."""
    lane_ends: list[int] = []  # the row after the last entry of each lane
    for entry in entries:  # earliest first
        for index, end in enumerate(lane_ends):
            if end <= entry.row:
                lane_ends[index] = entry.row + entry.span
                entry.lane = index + 1
                break
        else:
            lane_ends.append(entry.row + entry.span)
            entry.lane = len(lane_ends)
    lanes = min(len(lane_ends), MAX_LANES) or 1
    for entry in entries:
        entry.lane = min(entry.lane, lanes)
        width = 1
        for lane in range(entry.lane + 1, lanes + 1):
            if any(
                other.lane == lane
                and other.row < entry.row + entry.span
                and entry.row < other.row + other.span
                for other in entries
            ):
                break
            width += 1
        entry.width = width
    return lanes


def day_grid(
    day: date,
    tz: ZoneInfo,
    items: CalendarItems,
    resources: list[ResourceRow],
    resource_id: int | None,
    describer: Describer,
) -> DayGrid:
    day_start, day_end = display.local_day_bounds(day, tz)
    merged = all_items(items)
    span_start, span_end = day_span(day, tz, merged)
    rows = min(MAX_ROWS, rows_up(span_end - span_start))

    by_column: dict[int | str, list[Entry]] = defaultdict(list)
    for item in merged:
        entry = describer.entry(item, day_start, day_end)
        place(entry, span_start, rows)
        by_column[column_key(item)].append(entry)

    columns = []
    if by_column.get(WHOLE_SHOP):
        columns.append(Column(WHOLE_SHOP, "Whole shop", by_column[WHOLE_SHOP]))
    for resource in shown_resources(resources, by_column, resource_id):
        columns.append(Column(resource.id, resource.name, by_column.get(resource.id, [])))
    for column in columns:
        column.entries.sort(key=lambda e: (e.row, -e.span))
        column.lanes = assign_lanes(column.entries)

    hours = []
    offset = None
    for index in range(rows):
        local = (span_start + index * ROW).astimezone(tz)
        if local.minute:
            continue
        label = local.strftime("%H:%M")
        if offset is not None and local.utcoffset() != offset:
            label += f" {local.tzname()}"  # the clocks changed: this hour may repeat
        offset = local.utcoffset()
        hours.append((index + 1, min(ROWS_PER_HOUR, rows - index), label))
    last = "24:00" if span_end == day_end else describer.hm(span_end)
    return DayGrid(rows, hours, columns, describer.hm(span_start), last)


# ---------------------------------------------------------------- the week


@dataclass
class WeekDay:
    day: date
    label: str
    href: str
    is_today: bool


@dataclass
class WeekCell:
    day: WeekDay
    entries: list[Entry]

    @property
    def html(self) -> Markup:
        items = "".join(f"<li>{entry.link(placed=False)}</li>" for entry in self.entries)
        return Markup(items)  # noqa: S704 (link() escapes every text it puts in)


@dataclass
class WeekRow:
    key: int | str
    name: str
    cells: list[WeekCell]

    @property
    def empty(self) -> bool:
        return not any(cell.entries for cell in self.cells)


@dataclass
class WeekGrid:
    days: list[WeekDay]
    rows: list[WeekRow]

    @property
    def empty(self) -> bool:
        return not self.rows


def week_grid(
    days: list[WeekDay],
    tz: ZoneInfo,
    items: CalendarItems,
    resources: list[ResourceRow],
    resource_id: int | None,
    describer: Describer,
) -> WeekGrid:
    bounds = [display.local_day_bounds(d.day, tz) for d in days]
    cells: dict[int | str, list[list[Entry]]] = defaultdict(lambda: [[] for _ in days])
    for item in all_items(items):
        row = cells[column_key(item)]
        for index, (day_start, day_end) in enumerate(bounds):
            if item.starts_at < day_end and item.ends_at > day_start:
                row[index].append(describer.entry(item, day_start, day_end))

    def row(key: int | str, name: str) -> WeekRow:
        lists = cells[key] if key in cells else [[] for _ in days]
        return WeekRow(
            key, name, [WeekCell(d, entries) for d, entries in zip(days, lists, strict=True)]
        )

    rows = [row(WHOLE_SHOP, "Whole shop")] if WHOLE_SHOP in cells else []
    rows += [row(r.id, r.name) for r in shown_resources(resources, cells, resource_id)]
    return WeekGrid(days, rows)


# ---------------------------------------------------------------- the view

LEGEND = [
    ("cal-booking cal-booking-booked", "Booked"),
    ("cal-booking cal-booking-pending_payment", "Pending payment"),
    ("cal-booking cal-booking-completed", "Completed"),
    ("cal-opening cal-opening-open", "Open slot (offering)"),
    ("cal-opening cal-opening-filled", "Filled slot"),
    ("cal-opening cal-opening-expired", "Expired slot"),
    ("cal-block cal-block-manual", "Busy (manual)"),
    ("cal-block cal-block-synced", "Busy (synced calendar)"),
]


def day_title(day: date) -> str:
    return f"{day:%A} {day.day} {day:%B %Y}"


def week_title(first: date, last: date) -> str:
    if first.year != last.year:
        return f"{first.day} {first:%b %Y} {DASH} {last.day} {last:%b %Y}"
    if first.month != last.month:
        return f"{first.day} {first:%b} {DASH} {last.day} {last:%b %Y}"
    return f"{first.day} {DASH} {last.day} {last:%b %Y}"


# The busy blocks' admin view, by the endpoint names it has had; a plain URL while none is
# registered, so the calendar does not depend on that view being there.
BLOCK_ENDPOINTS = ("busy_blocks", "blocks")


def block_link(page: str) -> str:
    for endpoint in BLOCK_ENDPOINTS:
        try:
            return url_for(f"{endpoint}.{page}") + "?id="
        except BuildError:
            continue
    action = "edit" if page == "edit_view" else "details"
    return f"{url_for('admin.index').rstrip('/')}/busy_blocks/{action}/?id="


class CalendarView(StaffOnly, BaseView):
    def __init__(self, **kwargs) -> None:
        # The stylesheet is served from admin/static by this view's blueprint.
        kwargs.setdefault("static_folder", str(Path(__file__).parent / "static"))
        super().__init__(**kwargs)

    @expose("/")
    def index(self):
        shop = current_user.shop
        tz = display.zone(shop)
        today = utcnow().astimezone(tz).date()
        try:
            query = parse_query(request.args, today)
        except BadQuery as exc:
            return str(exc), 400, PLAIN_TEXT

        resources = shop_resources(db.session, shop.id)
        if query.resource_id is not None and all(r.id != query.resource_id for r in resources):
            return "No such resource in this shop.", 404, PLAIN_TEXT

        describer = Describer(
            tz,
            {
                "booking": url_for("appointments.details_view") + "?id=",
                "opening": url_for("openings.details_view") + "?id=",
                # Manual blocks open their edit form; synced ones are read-only there.
                "block": block_link("edit_view"),
                "block_synced": block_link("details_view"),
            },
        )

        if query.view == "day":
            first = last = query.day
            step = timedelta(days=1)
        else:
            first = query.day - timedelta(days=query.day.weekday())  # weeks start on Monday
            last = first + timedelta(days=6)
            step = timedelta(days=7)
        starts, _ = display.local_day_bounds(first, tz)
        _, ends = display.local_day_bounds(last, tz)
        items = items_between(db.session, shop.id, starts, ends, query.resource_id)

        def link(view: str = query.view, day: date = query.day) -> str:
            return url_for(".index", view=view, date=day.isoformat(), resource=query.resource_id)

        if query.view == "day":
            grid = day_grid(query.day, tz, items, resources, query.resource_id, describer)
            title = day_title(query.day)
        else:
            days = [
                WeekDay(
                    d,
                    f"{d:%a} {d.day}",
                    link("day", d),
                    d == today,
                )
                for d in (first + timedelta(days=n) for n in range(7))
            ]
            grid = week_grid(days, tz, items, resources, query.resource_id, describer)
            title = week_title(first, last)

        return self.render(
            "admin/calendar.html",
            shop=shop,
            query=query,
            title=title,
            grid=grid,
            resources=resources,
            legend=LEGEND,
            nav={
                "prev": link(day=query.day - step),
                "next": link(day=query.day + step),
                "today": link(day=today),
                "day": link("day"),
                "week": link("week"),
            },
            is_today=first <= today <= last,
        )
