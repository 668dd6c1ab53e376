"""Quiet hours: the pure window arithmetic across midnight and both daylight-saving
changes, and offers that wait for the end (or expire when the end is too late)."""

from datetime import UTC, datetime, time, timedelta

import pytest
from sqlalchemy import func, select

from jobs import tasks
from recovery.booking import cancellation
from recovery.effects import EffectKind
from recovery.messaging import texts
from recovery.messaging.quiet_hours import quiet_until
from recovery.models import Message, OpeningStatus, Shop, SlotOffer
from recovery.offers import offering, openings
from recovery.offers.offering import OfferOutcome
from recovery.sweep import sweep_batch
from tests.scenario import scene
from tests.twilio_signing import reply_text, signed_post


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def shop(start=time(21, 0), end=time(8, 0), zone="Europe/London") -> Shop:
    return Shop(name="Demo Salon", timezone=zone, quiet_hours_start=start, quiet_hours_end=end)


# ------------------------------------------------------------------ the window itself


@pytest.mark.parametrize(
    ("when", "until"),
    [
        (utc(2026, 1, 12, 20, 59), None),  # just before 21:00 GMT
        (utc(2026, 1, 12, 21, 0), utc(2026, 1, 13, 8, 0)),  # the start is quiet
        (utc(2026, 1, 12, 23, 59), utc(2026, 1, 13, 8, 0)),  # before midnight
        (utc(2026, 1, 13, 0, 1), utc(2026, 1, 13, 8, 0)),  # after midnight
        (utc(2026, 1, 13, 7, 59), utc(2026, 1, 13, 8, 0)),
        (utc(2026, 1, 13, 8, 0), None),  # the end is not
        (utc(2026, 7, 1, 20, 30), utc(2026, 7, 2, 7, 0)),  # 21:30 BST: ends 08:00 BST
        (utc(2026, 7, 1, 19, 59), None),  # 20:59 BST
    ],
)
def test_overnight_window_in_winter_and_summer(when, until):
    assert quiet_until(shop(), when) == until


def test_spring_change_night_is_an_hour_shorter():
    # Sun 29 Mar 2026: 01:00 GMT becomes 02:00 BST. 21:00 GMT Saturday to 08:00 BST Sunday.
    assert quiet_until(shop(), utc(2026, 3, 28, 20, 59)) is None
    assert quiet_until(shop(), utc(2026, 3, 28, 21, 0)) == utc(2026, 3, 29, 7, 0)
    assert quiet_until(shop(), utc(2026, 3, 29, 0, 59)) == utc(2026, 3, 29, 7, 0)  # 00:59 GMT
    assert quiet_until(shop(), utc(2026, 3, 29, 1, 0)) == utc(2026, 3, 29, 7, 0)  # 02:00 BST
    assert quiet_until(shop(), utc(2026, 3, 29, 7, 0)) is None  # 08:00 BST
    assert quiet_until(shop(), utc(2026, 3, 29, 19, 59)) is None  # 20:59 BST
    assert quiet_until(shop(), utc(2026, 3, 29, 20, 0)) == utc(2026, 3, 30, 7, 0)  # 21:00 BST


def test_autumn_change_night_is_an_hour_longer():
    # Sun 25 Oct 2026: 02:00 BST becomes 01:00 GMT. 21:00 BST Saturday to 08:00 GMT Sunday.
    assert quiet_until(shop(), utc(2026, 10, 24, 19, 59)) is None  # 20:59 BST
    assert quiet_until(shop(), utc(2026, 10, 24, 20, 0)) == utc(2026, 10, 25, 8, 0)
    assert quiet_until(shop(), utc(2026, 10, 25, 0, 30)) == utc(2026, 10, 25, 8, 0)  # 01:30 BST
    assert quiet_until(shop(), utc(2026, 10, 25, 1, 30)) == utc(2026, 10, 25, 8, 0)  # 01:30 GMT
    assert quiet_until(shop(), utc(2026, 10, 25, 8, 0)) is None
    assert quiet_until(shop(), utc(2026, 10, 25, 21, 0)) == utc(2026, 10, 26, 8, 0)  # 21:00 GMT


def test_an_end_that_does_not_exist_on_the_spring_change_day():
    # 22:00 to 01:30, but 01:30 never shows on 29 Mar 2026: the quiet period ends an hour
    # after the jump (01:30 read as GMT, i.e. 02:30 BST), which is not quiet itself.
    s = shop(time(22, 0), time(1, 30))
    until = quiet_until(s, utc(2026, 3, 28, 23, 0))
    assert until == utc(2026, 3, 29, 1, 30)
    assert quiet_until(s, until) is None
    assert quiet_until(s, utc(2026, 3, 29, 0, 45)) == until  # 00:45 GMT, before the jump


def test_an_end_that_occurs_twice_on_the_autumn_change_day():
    s = shop(time(22, 0), time(1, 30))
    # From the evening: the first 01:30 (BST).
    assert quiet_until(s, utc(2026, 10, 24, 22, 0)) == utc(2026, 10, 25, 0, 30)
    # On the repeated hour (01:10 GMT) the window is back, and ends at the second 01:30.
    assert quiet_until(s, utc(2026, 10, 25, 1, 10)) == utc(2026, 10, 25, 1, 30)
    assert quiet_until(s, utc(2026, 10, 25, 1, 30)) is None


def test_a_start_inside_the_spring_gap():
    s = shop(time(1, 30), time(7, 0))
    assert quiet_until(s, utc(2026, 3, 29, 0, 59)) is None  # 00:59 GMT
    assert quiet_until(s, utc(2026, 3, 29, 1, 0)) == utc(2026, 3, 29, 6, 0)  # 02:00 BST


def test_a_daytime_window_equal_times_and_another_zone():
    lunch = shop(time(12, 0), time(13, 0))
    assert quiet_until(lunch, utc(2026, 1, 12, 12, 30)) == utc(2026, 1, 12, 13, 0)
    assert quiet_until(lunch, utc(2026, 1, 12, 13, 0)) is None
    assert quiet_until(lunch, utc(2026, 1, 12, 11, 59)) is None
    assert quiet_until(shop(time(0, 0), time(0, 0)), utc(2026, 1, 12, 23, 0)) is None
    # New York moves on 8 Mar 2026: 22:00 EST Saturday to 08:00 EDT Sunday.
    ny = shop(zone="America/New_York")
    assert quiet_until(ny, utc(2026, 3, 8, 3, 0)) == utc(2026, 3, 8, 12, 0)


# ------------------------------------------------------------------ offers wait


NIGHT = utc(2026, 1, 12, 22, 0)  # Monday 22:00 GMT


@pytest.fixture
def night(session, clock):
    clock.now = NIGHT
    return scene(session, NIGHT, quiet_hours_start=time(21, 0), quiet_hours_end=time(8, 0))


def offers(session) -> int:
    return session.scalar(select(func.count()).select_from(SlotOffer))


def test_an_offer_falling_due_at_night_waits_until_the_morning(
    session, night, clock, recorder, driver
):
    opening = cancellation.cancel_appointment(session, night.booking.id, now=clock.now).opening
    session.commit()
    driver.run_due()
    assert offers(session) == 0
    waiting = recorder.of_kind(EffectKind.OFFER_NEXT)
    assert [(e.args, e.at) for e in waiting] == [((opening.id,), utc(2026, 1, 13, 8, 0))]

    # Calling it again (the sweep's restart, a retry) is harmless and writes nothing.
    assert offering.offer_next(session, opening.id, now=clock.now) == OfferOutcome.WAITING
    session.commit()
    assert offers(session) == 0

    clock.now = utc(2026, 1, 13, 8, 0)
    driver.run_due()
    offer = openings.live_offer(session, opening.id)
    assert offer is not None and offer.customer_id == night.customers[0].id
    assert offer.sent_at == clock.now
    assert offers(session) == 1


def test_the_sweep_does_not_restart_waiting_openings_at_night(session, night, clock, recorder):
    opening = cancellation.cancel_appointment(session, night.booking.id, now=clock.now).opening
    session.commit()
    recorder.clear()  # the OFFER_NEXT job was lost

    clock.now = utc(2026, 1, 13, 2, 0)
    report = sweep_batch(session, clock.now)
    session.commit()
    assert report.restarted_openings == 0
    assert recorder.of_kind(EffectKind.OFFER_NEXT) == []
    assert offers(session) == 0

    clock.now = utc(2026, 1, 13, 8, 1)
    report = sweep_batch(session, clock.now)
    session.commit()
    assert report.restarted_openings == 1
    assert openings.live_offer(session, opening.id) is not None


def test_an_opening_whose_quiet_end_is_inside_the_lead_time_expires_with_a_note(
    session, night, clock, recorder
):
    # Starts 08:30; quiet hours end 08:00, less than the 60 minutes' lead before it.
    night.booking.starts_at = utc(2026, 1, 13, 8, 30)
    night.booking.ends_at = utc(2026, 1, 13, 9, 0)
    session.flush()
    opening = cancellation.cancel_appointment(session, night.booking.id, now=clock.now).opening
    outcome = offering.offer_next(session, opening.id, now=clock.now)
    assert outcome == OfferOutcome.EXPIRED
    assert opening.status == OpeningStatus.EXPIRED
    assert "quiet hours" in opening.outcome_note and "close to the start" in opening.outcome_note
    assert offers(session) == 0


def test_offers_switched_off_expire_the_opening_with_a_note(session, clock, recorder):
    s = scene(session, clock.now, send_offers=False)
    opening = cancellation.cancel_appointment(session, s.booking.id, now=clock.now).opening
    assert offering.offer_next(session, opening.id, now=clock.now) == OfferOutcome.EXPIRED
    assert opening.status == OpeningStatus.EXPIRED
    assert "switched off" in opening.outcome_note
    assert offers(session) == 0


def test_replies_to_the_customer_are_answered_at_night(client, session, clock, recorder):
    # Offered at 20:50 with a long offer life; the YES comes at 23:00, in quiet hours.
    clock.now = utc(2026, 1, 12, 20, 50)
    s = scene(
        session,
        clock.now,
        quiet_hours_start=time(21, 0),
        quiet_hours_end=time(8, 0),
        offer_ttl_minutes=240,
    )
    opening = cancellation.cancel_appointment(session, s.booking.id, now=clock.now).opening
    assert offering.offer_next(session, opening.id, now=clock.now) == OfferOutcome.OFFERED
    session.commit()

    clock.now = utc(2026, 1, 12, 23, 0)
    help_reply = reply_text(signed_post(client, "HELP", s.customers[0].phone))
    assert help_reply == texts.help_text(s.shop)
    answer = reply_text(signed_post(client, "YES", s.customers[0].phone))
    assert answer.startswith(f"{s.shop.name}: It's yours! Pay the")
    session.expire_all()
    replies = session.scalars(
        select(Message.body).where(Message.purpose == "reply").order_by(Message.id)
    ).all()
    assert replies == [help_reply, answer]


def test_tasks_module_runs_offer_next_at_the_quiet_end(session, night, clock, recorder):
    # The job entry point (what rq-scheduler calls at 08:00) goes through the same checks.
    opening = cancellation.cancel_appointment(session, night.booking.id, now=clock.now).opening
    session.commit()
    assert tasks.offer_next(opening.id) == OfferOutcome.WAITING
    clock.now = utc(2026, 1, 13, 8, 0) + timedelta(seconds=1)
    assert tasks.offer_next(opening.id) == OfferOutcome.OFFERED
