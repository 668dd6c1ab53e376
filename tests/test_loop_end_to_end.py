"""The whole loop in time order: cancel -> offer A -> A silent -> expiry -> offer B ->
B says YES -> booking -> paid. Real jobs, real PostgreSQL, the real Twilio SDK against a
fake Twilio; the clock is moved by hand and each job runs when it falls due."""

from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from recovery.booking import cancellation, holds
from recovery.db import CLOCK_EXTENSION, db
from recovery.effects import DISPATCHER_EXTENSION, EffectKind
from recovery.models import Appointment, OfferStatus, OpeningStatus, SlotOffer
from tests.conftest import truncate_all
from tests.scenario import scene
from tests.support import Clock, Driver, RecordingDispatcher, installed
from tests.twilio_signing import reply_text, signed_post


@pytest.fixture
def world(twilio_app, redis_conn):
    clock = Clock(datetime(2026, 1, 12, 9, 0, tzinfo=UTC))
    recorder = RecordingDispatcher()
    with (
        installed(twilio_app, CLOCK_EXTENSION, clock),
        installed(twilio_app, DISPATCHER_EXTENSION, recorder),
        twilio_app.app_context(),
    ):
        s = scene(db.session, clock.now, n_customers=2)
        db.session.commit()
        yield s, clock, Driver(twilio_app, recorder, clock)
        db.session.remove()
    truncate_all(twilio_app)


def test_whole_loop(twilio_app, fake_twilio, world):
    s, clock, driver = world
    a, b = s.customers
    opening = cancellation.cancel_appointment(db.session, s.booking.id, now=clock.now).opening
    db.session.commit()

    driver.run_due()  # refund by policy + its SMS; offer_next -> offer to A -> its SMS
    refunded, offered = fake_twilio.messages
    assert refunded["to"] == s.owner.phone
    assert "Your booking tomorrow at 09:00 is cancelled. We're refunding £20" in refunded["body"]
    assert offered["to"] == a.phone
    assert "A slot opened tomorrow at 09:00. Reply YES to book." in offered["body"]
    assert s.booking.payments[0].refunds[0].status == "succeeded"

    clock.advance(minutes=14, seconds=59)
    assert driver.run_due() == []  # not yet: the expiry waits for its time
    clock.advance(seconds=1)
    ran = driver.run_due()
    assert [e.kind for e in ran] == [EffectKind.EXPIRE_OFFER, EffectKind.SEND_MESSAGE]
    assert [m["to"] for m in fake_twilio.messages] == [s.owner.phone, a.phone, b.phone]

    answer = reply_text(
        signed_post(
            twilio_app.test_client(),
            "yes",
            b.phone,
            sid="SM" + "b" * 32,
            auth_token=fake_twilio.auth_token,
        )
    )
    assert "Pay the £20 within 15 min to confirm" in answer

    db.session.expire_all()
    offers = db.session.scalars(select(SlotOffer).order_by(SlotOffer.id)).all()
    assert [(o.customer_id, o.status) for o in offers] == [
        (a.id, OfferStatus.EXPIRED),
        (b.id, OfferStatus.ACCEPTED),
    ]
    booking = db.session.scalar(
        select(Appointment).where(Appointment.source_slot_opening_id == opening.id)
    )
    assert booking.customer_id == b.id and booking.status == "pending_payment"
    assert db.session.get(type(opening), opening.id).status == OpeningStatus.FILLED

    holds.confirm_payment(db.session, booking.payments[0].id, now=clock.now)
    db.session.commit()
    driver.run_due()
    assert fake_twilio.messages[-1]["to"] == b.phone
    assert "Payment received. You're booked tomorrow at 09:00." in fake_twilio.messages[-1]["body"]
    db.session.expire_all()
    assert db.session.get(Appointment, booking.id).status == "booked"
    # The hold's deadline passes later; the booking is paid, so nothing happens.
    clock.advance(minutes=20)
    driver.run_due()
    assert db.session.get(Appointment, booking.id).status == "booked"
    assert len(fake_twilio.messages) == 4
