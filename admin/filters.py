"""List filters that speak the shop's language: statuses, and calendar days in its zone.

Flask-Admin's own datetime filters compare naive values with ``timestamptz`` columns (and
``UTCDateTime`` refuses naive datetimes); staff think in local days, so these filters
turn a local date into the UTC instants where that day starts and ends.
"""

from __future__ import annotations

import enum
from datetime import date

from flask_admin.contrib.sqla.filters import BaseSQLAFilter, FilterEqual

from admin.display import local_day_bounds, plausible_date, zone


def status_filter(column, enum_cls: type[enum.StrEnum], name: str = "Status") -> FilterEqual:
    options = [(member.value, member.value.replace("_", " ")) for member in enum_cls]
    return FilterEqual(column, name, options=options)


class _LocalDate(BaseSQLAFilter):
    def __init__(self, column, name: str) -> None:
        super().__init__(column, name, data_type="datepicker")

    def validate(self, value) -> bool:
        """A day staff could mean: a far-off year is refused like a malformed date."""
        try:
            return plausible_date(date.fromisoformat(value))
        except (TypeError, ValueError):
            return False

    def clean(self, value) -> date:
        return date.fromisoformat(value)

    def bounds(self, value: date):
        return local_day_bounds(value, zone())


class LocalDateOn(_LocalDate):
    def apply(self, query, value, alias=None):
        start, end = self.bounds(value)
        column = self.get_column(alias)
        return query.filter(column >= start, column < end)

    def operation(self) -> str:
        return "on"


class LocalDateFrom(_LocalDate):
    def apply(self, query, value, alias=None):
        start, _ = self.bounds(value)
        return query.filter(self.get_column(alias) >= start)

    def operation(self) -> str:
        return "from"


class LocalDateUntil(_LocalDate):
    def apply(self, query, value, alias=None):
        _, end = self.bounds(value)
        return query.filter(self.get_column(alias) < end)

    def operation(self) -> str:
        return "until"


def local_date_filters(column, name: str) -> list[_LocalDate]:
    return [LocalDateOn(column, name), LocalDateFrom(column, name), LocalDateUntil(column, name)]
