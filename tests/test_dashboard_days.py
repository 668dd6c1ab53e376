"""The dashboard counts openings by the shop's own calendar days, and its median time to
fill, in the database: the same figures on PostgreSQL and in the embedded SQLite."""

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from flask_migrate import upgrade

from admin import dashboard
from recovery.db import db
from recovery.models import OpeningStatus
from tests import factories as f

NEW_YORK = "America/New_York"


def openings_around_midnight(session):
    """Four openings in New York: two on the evening of 9 January (local), two after its
    midnight (UTC already on the 10th for all four), filled in 10, 30 and 50 minutes
    or left to expire."""
    shop = f.shop(session, timezone=NEW_YORK, currency="USD", locale="en_US")
    chair = f.resource(session, shop)
    service = f.service(session, shop)
    owner = f.customer(session, shop)
    made = [
        (datetime(2026, 1, 10, 3, 30, tzinfo=UTC), OpeningStatus.FILLED, 10),  # 9th, 22:30
        (datetime(2026, 1, 10, 4, 50, tzinfo=UTC), OpeningStatus.EXPIRED, None),  # 9th, 23:50
        (datetime(2026, 1, 10, 5, 10, tzinfo=UTC), OpeningStatus.FILLED, 30),  # 10th, 00:10
        (datetime(2026, 1, 10, 6, 0, tzinfo=UTC), OpeningStatus.FILLED, 50),  # 10th, 01:00
        (datetime(2026, 1, 11, 5, 0, tzinfo=UTC), OpeningStatus.FILLED, 5),  # 11th: not asked
    ]
    for n, (cancelled_at, status, minutes) in enumerate(made):
        source = f.appointment(
            session,
            chair,
            owner,
            service,
            starts_at=datetime(2026, 1, 20, 14, tzinfo=UTC) + timedelta(hours=n),
            status="cancelled",
            cancelled_at=cancelled_at,
        )
        f.opening(
            session,
            source,
            status=status,
            # The opening is made a few seconds after the cancellation: the time to fill
            # counts from the cancellation.
            created_at=cancelled_at + timedelta(seconds=5),
            filled_at=cancelled_at + timedelta(minutes=minutes) if minutes else None,
        )
    session.commit()
    return shop


def assert_counted_by_local_day(session, shop):
    period = dashboard.Period.of(date(2026, 1, 9), date(2026, 1, 10), ZoneInfo(NEW_YORK))
    metrics = dashboard.compute(session, shop, period)
    assert [(d.day, d.open, d.filled, d.expired) for d in metrics.per_day] == [
        (date(2026, 1, 9), 0, 1, 1),
        (date(2026, 1, 10), 0, 2, 0),
    ]
    assert (metrics.openings, metrics.filled) == (4, 3)
    assert metrics.median_to_fill == timedelta(minutes=30)  # of 10, 30 and 50

    # An even count takes the mean of the middle two.
    two_days = dashboard.Period.of(date(2026, 1, 9), date(2026, 1, 11), ZoneInfo(NEW_YORK))
    assert dashboard.compute(session, shop, two_days).median_to_fill == timedelta(minutes=20)

    empty = dashboard.Period.of(date(2026, 2, 1), date(2026, 2, 2), ZoneInfo(NEW_YORK))
    nothing = dashboard.compute(session, shop, empty)
    assert (nothing.openings, nothing.median_to_fill) == (0, None)


def test_postgresql_counts_openings_by_the_shops_days(session):
    assert_counted_by_local_day(session, openings_around_midnight(session))


def test_the_embedded_sqlite_counts_them_the_same(make_app, tmp_path):
    app = make_app(SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'demo.sqlite3'}", REDIS_URL=None)
    with app.app_context():
        upgrade()
        assert_counted_by_local_day(db.session, openings_around_midnight(db.session))
        db.session.remove()
