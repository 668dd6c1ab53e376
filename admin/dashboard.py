"""The dashboard's numbers for one shop and period (local calendar days, inclusive).

* openings: slot openings created in the period (a cancellation that opened a slot);
* recovery rate: those now filled ÷ all of them;
* median time to fill: cancellation to the winning YES, over the filled ones;
* recovered bookings and revenue: bookings made from openings in the period that are
  confirmed (booked or completed), and the price of their services;
* SMS: outbound texts accepted by the provider, with their estimated cost, in total and
  by purpose group (``recovery.messaging.costs``, the query the messages list uses too).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from admin.display import MAX_YEAR, MIN_YEAR, local_day_bounds, plausible_date
from recovery.db import local_date, seconds_between
from recovery.messaging.costs import SmsCosts, sms_costs
from recovery.models import (
    Appointment,
    AppointmentStatus,
    OpeningStatus,
    Service,
    Shop,
    SlotOpening,
)

DEFAULT_DAYS = 7
MAX_DAYS = 366
CONFIRMED = (AppointmentStatus.BOOKED, AppointmentStatus.COMPLETED)


@dataclass(frozen=True)
class Period:
    first: date
    last: date  # inclusive
    starts: datetime  # UTC
    ends: datetime  # UTC, exclusive

    @classmethod
    def of(cls, first: date, last: date, tz: ZoneInfo) -> Period:
        starts, _ = local_day_bounds(first, tz)
        _, ends = local_day_bounds(last, tz)
        return cls(first, last, starts, ends)

    @property
    def days(self) -> list[date]:
        return [self.first + timedelta(days=n) for n in range((self.last - self.first).days + 1)]


def parse_period(first: str | None, last: str | None, today: date, tz: ZoneInfo) -> Period:
    """The period asked for in the query string; the last 7 days when absent.

    Raises ValueError (with a message for staff) for dates that make no period.
    """
    end = date.fromisoformat(last) if last else today
    if not plausible_date(end):
        raise ValueError(f"Pick dates between {MIN_YEAR} and {MAX_YEAR}.")
    start = date.fromisoformat(first) if first else end - timedelta(days=DEFAULT_DAYS - 1)
    if not plausible_date(start):
        raise ValueError(f"Pick dates between {MIN_YEAR} and {MAX_YEAR}.")
    if start > end:
        raise ValueError("The period's first day is after its last day.")
    if (end - start).days >= MAX_DAYS:
        raise ValueError(f"Pick a period of at most {MAX_DAYS} days.")
    return Period.of(start, end, tz)


@dataclass(frozen=True)
class DayOutcomes:
    day: date
    open: int = 0
    filled: int = 0
    expired: int = 0


@dataclass(frozen=True)
class Metrics:
    openings: int
    filled: int
    recovered_bookings: int
    median_to_fill: timedelta | None
    revenue_minor: int
    sms: SmsCosts  # by purpose group
    per_day: list[DayOutcomes]

    @property
    def recovery_rate(self) -> float | None:
        return self.filled / self.openings if self.openings else None

    # The totals are the groups' sums, so the cards and the table can never disagree.
    @property
    def sms_sent(self) -> int:
        return self.sms.count

    @property
    def sms_segments(self) -> int:
        return self.sms.segments

    @property
    def sms_cost_minor(self) -> int:
        return self.sms.cost_minor


def compute(session: Session, shop: Shop, period: Period) -> Metrics:
    # Counted and grouped by the database: a year of a busy shop is thousands of openings
    # and hundreds of thousands of texts, too many to read into Python for a page view.
    in_period = (
        SlotOpening.shop_id == shop.id,
        SlotOpening.created_at >= period.starts,
        SlotOpening.created_at < period.ends,
    )
    # Grouped by name through a subquery: PostgreSQL would not see the day's expression
    # (its zone a parameter) repeated in GROUP BY as the same one.
    openings = (
        select(local_date(SlotOpening.created_at, shop.timezone).label("day"), SlotOpening.status)
        .where(*in_period)
        .subquery()
    )
    counts = {day: {"open": 0, "filled": 0, "expired": 0} for day in period.days}
    total = filled = 0
    for day, status, count in session.execute(
        select(openings.c.day, openings.c.status, func.count()).group_by(
            openings.c.day, openings.c.status
        )
    ):
        total += count
        filled += count if status == OpeningStatus.FILLED else 0
        if day in counts and status in counts[day]:
            counts[day][status] += count

    # The median time to fill: cancellation (or, failing that, the opening) to the winning
    # YES. Only the middle one or two are read: ranked 2r in [n, n + 2] out of n.
    fills = (
        select(
            seconds_between(
                func.coalesce(Appointment.cancelled_at, SlotOpening.created_at),
                SlotOpening.filled_at,
            ).label("seconds")
        )
        .join(Appointment, SlotOpening.source_appointment_id == Appointment.id)
        .where(
            *in_period,
            SlotOpening.status == OpeningStatus.FILLED,
            SlotOpening.filled_at.is_not(None),
        )
        .subquery()
    )
    ranked = select(
        fills.c.seconds,
        func.row_number().over(order_by=fills.c.seconds).label("rank"),
        func.count().over().label("n"),
    ).subquery()
    middle = session.scalars(
        select(ranked.c.seconds).where(
            ranked.c.rank * 2 >= ranked.c.n, ranked.c.rank * 2 <= ranked.c.n + 2
        )
    ).all()

    recovered = session.execute(
        select(func.count(Appointment.id), func.coalesce(func.sum(Service.price_minor), 0))
        .join(Service, Appointment.service_id == Service.id)
        .where(
            Appointment.shop_id == shop.id,
            Appointment.source_slot_opening_id.is_not(None),
            Appointment.status.in_(CONFIRMED),
            Appointment.created_at >= period.starts,
            Appointment.created_at < period.ends,
        )
    ).one()
    sms = sms_costs(session, shop.id, period.starts, period.ends)

    return Metrics(
        openings=total,
        filled=filled,
        recovered_bookings=recovered[0],
        median_to_fill=(timedelta(seconds=statistics.median(middle)) if middle else None),
        revenue_minor=int(recovered[1]),
        sms=sms,
        per_day=[DayOutcomes(day, **counts[day]) for day in period.days],
    )
