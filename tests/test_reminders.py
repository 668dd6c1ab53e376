"""Reminders: at their exact time, once per start time (the database says so), skipped
when cancelled, switched off or booked too late, moved with the booking, held in quiet
hours, and sent once after the worker was down."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest
from sqlalchemy import func, select

from jobs import tasks
from jobs.dispatch import RQDispatcher
from jobs.schedule import SCHEDULE
from recovery.booking import cancellation
from recovery.db import utcnow
from recovery.effects import Effect, EffectKind
from recovery.messaging import texts
from recovery.messaging.gsm import is_gsm7, segments
from recovery.messaging.outbox import Purpose
from recovery.messaging.reminders import due_reminders, schedule_reminder, send_reminder
from recovery.models import Appointment, DepositKind, Message, Reminder, Shop
from recovery.offers import accepting, offering, openings
from recovery.sweep import sweep_batch
from tests import factories as f
from tests.fault_support import settle
from tests.processes import running, wait_until
from tests.scenario import scene
from tests.test_faults_crashes import SCHEDULER, WORKER, twilio_env
from tests.test_races import at_once

LINK = "https://slots.example.com/b/" + "x" * 22  # a real manage link is this long


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def reminders_sent(session) -> list[Message]:
    session.expire_all()
    return session.scalars(
        select(Message).where(Message.purpose == Purpose.REMINDER).order_by(Message.id)
    ).all()


def booking(session, now, starts_in=timedelta(days=3), **shop_kw) -> Appointment:
    shop = f.shop(session, **shop_kw)
    chair, service = f.resource(session, shop), f.service(session, shop)
    return f.appointment(
        session, chair, f.customer(session, shop), service, starts_at=now + starts_in
    )


def reminder_effects(recorder) -> list[tuple[tuple, datetime]]:
    return [(e.args, e.at) for e in recorder.of_kind(EffectKind.SEND_REMINDER)]


# ------------------------------------------------------------------ the text


@pytest.mark.parametrize("days", [0, 1, 3, 20])
def test_the_reminder_fits_one_segment_with_a_real_link(days):
    shop = Shop(name="The Very Long Named Hair And Beauty Studio", timezone="Europe/London")
    shop.locale = "en_GB"
    now = utc(2026, 1, 12, 9, 0)
    body = texts.reminder(shop, now + timedelta(days=days, hours=1, minutes=30), now, LINK)
    assert is_gsm7(body) and segments(body) == 1
    assert body.endswith(LINK) and "Reminder" in body
    assert "reply cancel" not in body.lower()


def test_the_reminder_reads_well():
    shop = Shop(name="Demo Salon", timezone="Europe/London", locale="en_GB")
    body = texts.reminder(shop, utc(2026, 1, 13, 10, 30), utc(2026, 1, 12, 10, 30), LINK)
    assert (
        body == f"Demo Salon: Reminder: you're booked tomorrow at 10:30. Manage or cancel: {LINK}"
    )


# ------------------------------------------------------------------ scheduling and sending


def test_scheduled_for_its_exact_time_and_sent_then(session, clock, recorder, driver):
    appt = booking(session, clock.now)
    schedule_reminder(session, appt, clock.now)
    session.commit()
    due = appt.starts_at - timedelta(hours=24)
    assert reminder_effects(recorder) == [((appt.id,), due)]

    clock.now = due - timedelta(seconds=1)
    assert driver.run_due() == [] and reminders_sent(session) == []
    clock.now = due
    driver.run_due()
    [message] = reminders_sent(session)
    assert message.appointment_id == appt.id and message.to_number == appt.customer.phone
    assert f"/b/{appt.manage_token}" in message.body
    reminder = session.scalar(select(Reminder).where(Reminder.appointment_id == appt.id))
    assert (reminder.starts_at, reminder.message_id) == (appt.starts_at, message.id)


def test_the_shops_hours_set_the_time(session, clock, recorder):
    appt = booking(session, clock.now, reminder_hours=2)
    schedule_reminder(session, appt, clock.now)
    session.commit()
    assert reminder_effects(recorder) == [((appt.id,), appt.starts_at - timedelta(hours=2))]


def test_an_early_run_comes_back_at_the_right_time(session, clock, recorder):
    appt = booking(session, clock.now)
    assert send_reminder(session, appt.id, clock.now) == "not due yet"
    session.commit()
    assert reminder_effects(recorder) == [((appt.id,), appt.starts_at - timedelta(hours=24))]
    assert reminders_sent(session) == []


def test_the_job_twice_and_the_sweep_send_one_text(session, clock, recorder):
    appt = booking(session, clock.now, starts_in=timedelta(hours=20))
    appt.created_at = clock.now - timedelta(days=2)
    session.flush()
    assert tasks.send_reminder(appt.id) == "sent"
    assert tasks.send_reminder(appt.id) == "already sent"
    assert sweep_batch(session, clock.now).sent_reminders == 0
    assert due_reminders(session, clock.now, 10) == []
    assert len(reminders_sent(session)) == 1


def test_sent_once_when_jobs_and_sweeps_race(app, committed, recorder):
    appts = []
    for _ in range(5):
        appt = booking(committed, utcnow(), starts_in=timedelta(hours=23))
        appt.created_at = utcnow() - timedelta(days=2)
        appts.append(appt)
    committed.commit()

    def in_app(call):
        def run():
            with app.app_context():
                return call()

        return run

    for appt in appts:
        at_once(
            in_app(lambda a=appt.id: tasks.send_reminder(a)),
            in_app(lambda a=appt.id: tasks.send_reminder(a)),
            in_app(tasks.sweep),
            in_app(tasks.sweep),
        )
    sent = reminders_sent(committed)
    assert sorted(m.appointment_id for m in sent) == sorted(a.id for a in appts)
    assert committed.scalar(select(func.count()).select_from(Reminder)) == len(appts)


# ------------------------------------------------------------------ not sent


def test_not_sent_for_a_cancelled_booking(session, clock, recorder, driver):
    appt = booking(session, clock.now)
    schedule_reminder(session, appt, clock.now)
    session.commit()
    cancellation.cancel_appointment(session, appt.id, now=clock.now)
    session.commit()
    clock.now = appt.starts_at - timedelta(hours=1)
    driver.run_due()
    assert sweep_batch(session, clock.now).sent_reminders == 0
    assert reminders_sent(session) == []
    assert send_reminder(session, appt.id, clock.now) == "no reminder wanted"


def test_not_sent_when_booked_after_the_reminder_time(session, clock, recorder):
    appt = booking(session, clock.now, starts_in=timedelta(hours=10))
    schedule_reminder(session, appt, clock.now)
    session.commit()
    assert reminder_effects(recorder) == []
    assert due_reminders(session, clock.now, 10) == []
    assert send_reminder(session, appt.id, clock.now) == "no reminder wanted"
    assert reminders_sent(session) == []


@pytest.mark.parametrize("shop_kw", [{"send_reminders": False}, {"reminder_hours": 0}])
def test_not_sent_when_switched_off(session, clock, recorder, shop_kw):
    appt = booking(session, clock.now, **shop_kw)
    schedule_reminder(session, appt, clock.now)
    session.commit()
    assert reminder_effects(recorder) == []
    clock.now = appt.starts_at - timedelta(hours=1)
    assert due_reminders(session, clock.now, 10) == []
    assert send_reminder(session, appt.id, clock.now) == "no reminder wanted"
    assert reminders_sent(session) == []


def test_not_sent_once_the_start_has_passed(session, clock, recorder):
    appt = booking(session, clock.now)
    clock.now = appt.starts_at
    assert send_reminder(session, appt.id, clock.now) == "already started"
    assert due_reminders(session, clock.now, 10) == []


# ------------------------------------------------------------------ moved bookings


def move(session, appt: Appointment, starts_at: datetime, now: datetime) -> None:
    appt.ends_at = starts_at + (appt.ends_at - appt.starts_at)
    appt.starts_at = starts_at
    session.flush()
    schedule_reminder(session, appt, now)
    session.commit()


def test_a_moved_booking_is_reminded_at_its_new_time_only(session, clock, recorder, driver):
    appt = booking(session, clock.now)
    old_due = appt.starts_at - timedelta(hours=24)
    schedule_reminder(session, appt, clock.now)
    session.commit()
    new_start = appt.starts_at + timedelta(days=1)
    move(session, appt, new_start, clock.now)

    clock.now = old_due
    driver.run_due()  # the old time's job finds it early and comes back later
    assert reminders_sent(session) == []
    assert sweep_batch(session, clock.now).sent_reminders == 0

    clock.now = new_start - timedelta(hours=24)
    driver.run_due()
    [message] = reminders_sent(session)
    assert "Reminder: you're booked tomorrow" in message.body
    assert [r.starts_at for r in session.scalars(select(Reminder))] == [new_start]


def test_a_booking_moved_after_its_reminder_is_reminded_again(session, clock, recorder, driver):
    appt = booking(session, clock.now)
    schedule_reminder(session, appt, clock.now)
    session.commit()
    clock.now = appt.starts_at - timedelta(hours=24)
    driver.run_due()
    assert len(reminders_sent(session)) == 1

    new_start = appt.starts_at + timedelta(days=2)
    move(session, appt, new_start, clock.now)
    clock.now = new_start - timedelta(hours=24)
    driver.run_due()
    assert len(reminders_sent(session)) == 2
    assert session.scalar(select(func.count()).select_from(Reminder)) == 2


# ------------------------------------------------------------------ booked by the loop


def test_a_no_deposit_yes_schedules_the_reminder(session, clock, recorder):
    s = scene(session, clock.now)
    s.service.deposit_kind, s.service.deposit_value = DepositKind.NONE, 0
    s.booking.starts_at = clock.now + timedelta(days=2)
    s.booking.ends_at = s.booking.starts_at + timedelta(minutes=30)
    session.flush()
    opening = cancellation.cancel_appointment(session, s.booking.id, now=clock.now).opening
    offering.offer_next(session, opening.id, now=clock.now)
    offer = openings.live_offer(session, opening.id)
    won = accepting.accept_offer(session, offer.id, now=clock.now)
    session.commit()
    assert won.payment is None and won.appointment.status == "booked"
    assert reminder_effects(recorder) == [
        ((won.appointment.id,), opening.starts_at - timedelta(hours=24))
    ]


# ------------------------------------------------------------------ quiet hours


QUIET = {"quiet_hours_start": time(21, 0), "quiet_hours_end": time(8, 0)}


def test_a_reminder_due_in_quiet_hours_waits_until_they_end(session, clock, recorder, driver):
    # Starts Wednesday 22:30 GMT: due Tuesday 22:30, inside quiet hours; sent 08:00 Wednesday.
    appt = booking(session, clock.now, starts_in=utc(2026, 1, 14, 22, 30) - clock.now, **QUIET)
    schedule_reminder(session, appt, clock.now)
    session.commit()
    assert reminder_effects(recorder) == [((appt.id,), utc(2026, 1, 14, 8, 0))]

    # A job arriving at 22:30 anyway (or the sweep) holds it too.
    clock.now = utc(2026, 1, 13, 22, 30)
    assert due_reminders(session, clock.now, 10) == []
    assert send_reminder(session, appt.id, clock.now) == "not due yet"
    session.commit()
    clock.now = utc(2026, 1, 14, 7, 59)
    driver.run_due()
    assert reminders_sent(session) == []
    clock.now = utc(2026, 1, 14, 8, 0)
    driver.run_due()
    assert len(reminders_sent(session)) == 1


def test_a_reminder_whose_quiet_end_is_after_the_start_is_not_sent(session, clock, recorder):
    # Starts 07:30: due at 05:30 (hours=2), and quiet hours run until 08:00.
    appt = booking(
        session, clock.now, starts_in=utc(2026, 1, 14, 7, 30) - clock.now, reminder_hours=2, **QUIET
    )
    schedule_reminder(session, appt, clock.now)
    session.commit()
    assert reminder_effects(recorder) == []
    assert send_reminder(session, appt.id, utc(2026, 1, 14, 5, 30)) == "quiet hours until the start"


@pytest.mark.parametrize(
    ("starts_at", "sent_at"),
    [
        # Sun 29 Mar 2026 10:00 BST: due 21:00 GMT Saturday, sent 08:00 BST Sunday.
        (utc(2026, 3, 29, 9, 0), utc(2026, 3, 29, 7, 0)),
        # Sun 25 Oct 2026 10:00 GMT: due 23:00 BST Saturday, sent 08:00 GMT Sunday.
        (utc(2026, 10, 25, 10, 0), utc(2026, 10, 25, 8, 0)),
    ],
)
def test_quiet_hours_on_the_daylight_saving_nights(
    session, clock, recorder, driver, starts_at, sent_at
):
    appt = booking(session, clock.now, starts_in=starts_at - clock.now, reminder_hours=12, **QUIET)
    schedule_reminder(session, appt, clock.now)
    session.commit()
    assert reminder_effects(recorder) == [((appt.id,), sent_at)]
    clock.now = sent_at - timedelta(minutes=1)
    assert due_reminders(session, clock.now, 10) == []
    clock.now = sent_at
    driver.run_due()
    [message] = reminders_sent(session)
    assert "today at 10:00" in message.body


# ------------------------------------------------------------------ the sweep


def test_the_sweep_sends_a_reminder_whose_job_was_lost(session, clock, recorder):
    appt = booking(session, clock.now)
    schedule_reminder(session, appt, clock.now)
    session.commit()
    recorder.clear()
    clock.now = appt.starts_at - timedelta(hours=3)
    assert due_reminders(session, clock.now, 10) == [appt.id]
    assert sweep_batch(session, clock.now).sent_reminders == 1
    session.commit()
    assert sweep_batch(session, clock.now).sent_reminders == 0
    assert len(reminders_sent(session)) == 1


# ------------------------------------------------------------------ the worker was down


def test_a_reminder_due_while_the_worker_is_down_is_sent_once_after_restart(
    app, database_url, redis_conn, committed, fake_twilio
):
    now = utcnow()
    appt = booking(committed, now, starts_in=timedelta(hours=24, seconds=2))
    appt.created_at = now - timedelta(days=1)
    committed.commit()
    due = appt.starts_at - timedelta(hours=24)
    # Scheduled with rq-scheduler as usual; no worker and no scheduler run.
    RQDispatcher(app).dispatch([Effect(EffectKind.SEND_REMINDER, (appt.id,), at=due)])
    settle(max(0.0, (due - utcnow()).total_seconds()) + 1.0)
    assert reminders_sent(committed) == []

    env = twilio_env(database_url, fake_twilio)
    with running(WORKER, env) as worker, running(SCHEDULER, env) as scheduler:
        # The exact-time job and the first sweep both find it due.
        sent = wait_until(lambda: fake_twilio.messages, 30, "the reminder to go out", worker)
        wait_until(
            # Only the periodic entries remain once the reminder's own entry is taken.
            lambda: redis_conn.zcard("rq:scheduler:scheduled_jobs") <= len(SCHEDULE),
            20,
            "the scheduled reminder to be taken",
            scheduler,
        )
        wait_until(lambda: redis_conn.llen("rq:queue:default") == 0, 20, "the queue to drain")
        settle(2.0)

    assert [m["to"] for m in fake_twilio.messages] == [appt.customer.phone]
    assert "Reminder" in sent[0]["body"]
    [message] = reminders_sent(committed)
    assert message.status == "sent" and message.appointment_id == appt.id
    assert committed.scalar(select(func.count()).select_from(Reminder)) == 1
