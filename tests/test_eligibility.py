"""Who is offered an opening next: each eligibility rule alone, the order, one query.

Every rule test starts from the same line-up: ``first`` (settled most recently) would be
offered the opening, ``second`` would come next. The test changes one thing about
``first`` so that exactly one rule applies, and checks that ``second`` is chosen instead.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

import pytest
from sqlalchemy import event

from recovery.db import db
from recovery.models import Customer, Resource, Service, Shop, SlotOpening
from recovery.offers.eligibility import eligible_customers_query, next_eligible_customer
from tests import factories as f


@dataclass
class World:
    shop: Shop
    chair: Resource
    other_chair: Resource
    service: Service
    owner: Customer  # cancelled the booking the opening comes from
    opening: SlotOpening
    first: Customer  # first in line when no rule excludes anyone
    second: Customer  # next in line


def world(session, now, **shop_kw) -> World:
    shop = f.shop(session, **shop_kw)
    chair = f.resource(session, shop, name="Chair A")
    other_chair = f.resource(session, shop, name="Chair B")
    service = f.service(session, shop)
    owner = f.customer(session, shop, name="Owner")
    cancelled = f.appointment(
        session,
        chair,
        owner,
        service,
        starts_at=now + timedelta(days=1),
        paid=True,
        status="cancelled",
    )
    opening = f.opening(session, cancelled)
    first = f.customer(session, shop, name="First", last_settled_at=now - timedelta(days=1))
    second = f.customer(session, shop, name="Second", last_settled_at=now - timedelta(days=2))
    return World(shop, chair, other_chair, service, owner, opening, first, second)


@pytest.fixture
def w(session, clock) -> World:
    return world(session, clock.now)


def chosen(session, w: World, now):
    return next_eligible_customer(session, w.opening, now)


def line_up(session, opening, now) -> list[str]:
    return [c.name for c in session.scalars(eligible_customers_query(opening, now))]


def other_opening(session, w: World, now, hours_later: int = 3) -> SlotOpening:
    """A second opening in the same shop (another cancelled booking, later that day)."""
    source = f.appointment(
        session,
        w.chair,
        w.owner,
        w.service,
        starts_at=now + timedelta(days=1, hours=hours_later),
        status="cancelled",
    )
    return f.opening(session, source)


# ---------------------------------------------------------------- the baseline


def test_with_no_rule_in_play_the_most_recently_settled_customer_is_first(session, w, clock):
    assert chosen(session, w, clock.now) == w.first
    assert line_up(session, w.opening, clock.now) == ["First", "Second"]


# ---------------------------------------------------------------- one rule at a time


def test_a_customer_of_another_shop_is_never_offered(session, w, clock):
    elsewhere = f.shop(session)
    f.customer(session, elsewhere, name="Elsewhere", last_settled_at=clock.now - timedelta(hours=1))
    assert chosen(session, w, clock.now) == w.first
    assert "Elsewhere" not in line_up(session, w.opening, clock.now)


def test_a_customer_who_never_opted_in_is_skipped(session, w, clock):
    w.first.sms_opt_in = False
    session.flush()
    assert chosen(session, w, clock.now) == w.second


def test_a_customer_who_opted_out_is_skipped(session, w, clock):
    w.first.opted_out_at = clock.now - timedelta(days=3)
    session.flush()
    assert w.first.sms_opt_in is True  # only the opt-out applies
    assert chosen(session, w, clock.now) == w.second


@pytest.mark.parametrize(
    "raw_phone",
    ["07911123456", "447911123456", "+44 7911 123456", "+07911123456", "+4479"],
)
def test_a_number_that_is_not_e164_is_skipped(session, w, clock, raw_phone):
    w.first.phone = raw_phone
    session.flush()
    assert chosen(session, w, clock.now) == w.second


@pytest.mark.parametrize("status", ["booked", "pending_payment"])
def test_a_customer_already_booked_at_that_time_is_skipped(session, w, clock, status):
    f.appointment(
        session,
        w.other_chair,
        w.first,
        w.service,
        starts_at=w.opening.starts_at + timedelta(minutes=15),  # overlaps the second half
        status=status,
    )
    assert chosen(session, w, clock.now) == w.second


def test_a_cancelled_booking_at_that_time_does_not_count(session, w, clock):
    f.appointment(
        session,
        w.other_chair,
        w.first,
        w.service,
        starts_at=w.opening.starts_at,
        status="cancelled",
    )
    assert chosen(session, w, clock.now) == w.first


@pytest.mark.parametrize("side", ["just before", "just after"])
def test_a_booking_touching_but_not_overlapping_the_slot_does_not_count(session, w, clock, side):
    length = w.opening.ends_at - w.opening.starts_at
    starts_at = w.opening.starts_at - length if side == "just before" else w.opening.ends_at
    booking = f.appointment(
        session, w.other_chair, w.first, w.service, starts_at=starts_at, ends_at=starts_at + length
    )
    assert booking.ends_at == w.opening.starts_at or booking.starts_at == w.opening.ends_at
    assert chosen(session, w, clock.now) == w.first


def test_a_customer_offered_something_within_the_cooldown_is_skipped(session, clock):
    w = world(session, clock.now, cooldown_hours=24)
    earlier = other_opening(session, w, clock.now)
    f.offer(
        session,
        earlier,
        w.first,
        status="declined",  # not live: only the cooldown applies
        sent_at=clock.now - timedelta(hours=23),
        expires_at=clock.now - timedelta(hours=22, minutes=45),
    )
    assert chosen(session, w, clock.now) == w.second


def test_after_the_cooldown_the_customer_is_offered_again(session, clock):
    w = world(session, clock.now, cooldown_hours=24)
    earlier = other_opening(session, w, clock.now)
    f.offer(
        session,
        earlier,
        w.first,
        status="declined",
        sent_at=clock.now - timedelta(hours=25),
        expires_at=clock.now - timedelta(hours=24, minutes=45),
    )
    assert chosen(session, w, clock.now) == w.first


def test_a_customer_holding_a_live_offer_elsewhere_is_skipped(session, clock):
    w = world(session, clock.now, cooldown_hours=0)  # only the live offer applies
    elsewhere = other_opening(session, w, clock.now)
    f.offer(
        session,
        elsewhere,
        w.first,
        status="sent",
        sent_at=clock.now - timedelta(minutes=5),
        expires_at=clock.now + timedelta(minutes=10),
    )
    assert chosen(session, w, clock.now) == w.second


@pytest.mark.parametrize("status", ["declined", "expired"])
def test_a_customer_already_offered_this_opening_is_not_offered_it_again(session, clock, status):
    w = world(session, clock.now, cooldown_hours=0)  # only "offered this opening" applies
    f.offer(
        session,
        w.opening,
        w.first,
        status=status,
        sent_at=clock.now - timedelta(minutes=20),
        expires_at=clock.now - timedelta(minutes=5),
    )
    assert chosen(session, w, clock.now) == w.second


def test_the_customer_who_cancelled_is_not_offered_their_own_slot(session, w, clock):
    w.owner.last_settled_at = clock.now - timedelta(hours=1)  # would be first in line
    session.flush()
    assert chosen(session, w, clock.now) == w.first
    assert "Owner" not in line_up(session, w.opening, clock.now)


@pytest.mark.parametrize(
    ("required", "expected"),
    [(False, ["First", "Second", "Newcomer"]), (True, ["First", "Second"])],
)
def test_a_shop_may_require_a_prior_settled_booking(session, clock, required, expected):
    w = world(session, clock.now, require_prior_settled_booking=required)
    f.customer(session, w.shop, name="Newcomer", last_settled_at=None)
    assert line_up(session, w.opening, clock.now) == expected


def test_with_only_newcomers_a_shop_requiring_history_offers_no_one(session, clock):
    w = world(session, clock.now, require_prior_settled_booking=True)
    w.first.last_settled_at = None
    w.second.last_settled_at = None
    session.flush()
    assert chosen(session, w, clock.now) is None

    w.shop.require_prior_settled_booking = False
    session.flush()
    assert chosen(session, w, clock.now) == w.first  # the rule alone excluded them


# ---------------------------------------------------------------- order and cost


def test_order_is_most_recently_settled_first_then_never_settled_then_by_id(session, w, clock):
    w.first.sms_opt_in = w.second.sms_opt_in = False  # out of the way
    session.flush()
    now = clock.now
    # Created (so numbered) in an order unrelated to the expected one.
    customers = [
        ("New A", None),
        ("Old", now - timedelta(days=30)),
        ("Tie A", now - timedelta(days=5)),
        ("Newest", now - timedelta(hours=2)),
        ("Tie B", now - timedelta(days=5)),
        ("New B", None),
    ]
    for name, settled in customers:
        f.customer(session, w.shop, name=name, last_settled_at=settled)

    assert line_up(session, w.opening, now) == ["Newest", "Tie A", "Tie B", "Old", "New A", "New B"]
    assert chosen(session, w, now).name == "Newest"


@contextmanager
def statements_counted() -> Iterator[list[str]]:
    seen: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany):
        seen.append(statement)

    event.listen(db.engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(db.engine, "before_cursor_execute", count)


def test_choosing_the_next_customer_is_one_sql_statement(session, clock):
    w = world(session, clock.now, cooldown_hours=24, require_prior_settled_booking=True)
    # Some of everything the query has to look at.
    f.appointment(session, w.other_chair, w.first, w.service, starts_at=w.opening.starts_at)
    f.offer(session, other_opening(session, w, clock.now), w.second, status="declined")
    for i in range(5):
        f.customer(
            session, w.shop, name=f"Extra {i}", last_settled_at=clock.now - timedelta(days=i + 3)
        )
    assert w.opening.shop is w.shop  # already loaded: not part of the count

    with statements_counted() as statements:
        customer = next_eligible_customer(session, w.opening, clock.now)

    assert customer.name == "Extra 0"
    assert len(statements) == 1, statements
