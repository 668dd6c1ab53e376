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
    tz = ZoneInfo(shop.timezone)
    in_period = (SlotOpening.created_at >= period.starts, SlotOpening.created_at < period.ends)
    rows = session.execute(
        select(
            SlotOpening.created_at,
            SlotOpening.status,
            SlotOpening.filled_at,
            Appointment.cancelled_at,
        )
        .join(Appointment, SlotOpening.source_appointment_id == Appointment.id)
        .where(SlotOpening.shop_id == shop.id, *in_period)
    ).all()

    counts = {day: {"open": 0, "filled": 0, "expired": 0} for day in period.days}
    fill_times = []
    for created_at, status, filled_at, cancelled_at in rows:
        day = created_at.astimezone(tz).date()
        if day in counts and status in counts[day]:
            counts[day][status] += 1
        if status == OpeningStatus.FILLED and filled_at is not None:
            fill_times.append(filled_at - (cancelled_at or created_at))

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
        openings=len(rows),
        filled=sum(1 for row in rows if row.status == OpeningStatus.FILLED),
        recovered_bookings=recovered[0],
        median_to_fill=statistics.median(fill_times) if fill_times else None,
        revenue_minor=int(recovered[1]),
        sms=sms,
        per_day=[DayOutcomes(day, **counts[day]) for day in period.days],
    )
