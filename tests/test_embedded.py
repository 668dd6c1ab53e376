"""The embedded default: SQLite, no Redis, jobs in a thread of the app, still on time."""

from datetime import timedelta

import pytest
from flask_migrate import upgrade

from recovery import effects
from recovery.booking import cancellation
from recovery.db import db, utcnow
from recovery.effects import DISPATCHER_EXTENSION, EffectKind
from recovery.models import Message, OfferStatus, SlotOffer
from recovery.offers import accepting, offering, openings
from tests import factories as f
from tests.processes import wait_until
from tests.scenario import scene


def test_an_offer_expires_on_time_and_the_next_customer_is_texted(make_app, tmp_path):
    app = make_app(SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'demo.sqlite3'}", REDIS_URL=None)
    with app.app_context():
        upgrade()
        dispatcher = app.extensions[DISPATCHER_EXTENSION]
        dispatcher.start()
        s = scene(db.session, utcnow(), n_customers=2)
        opening = f.opening(db.session, s.booking)
        s.booking.status = "cancelled"
        due = utcnow() + timedelta(seconds=1)
        first = f.offer(db.session, opening, s.customers[0], expires_at=due)
        effects.request(db.session, EffectKind.EXPIRE_OFFER, first.id, at=due)
        db.session.commit()
        first_id, second_phone = first.id, s.customers[1].phone

        def next_offer_texted():
            db.session.expire_all()
            return (
                db.session.query(Message).filter_by(to_number=second_phone, status="sent").first()
            )

        text = wait_until(next_offer_texted, 10, "the next customer's offer text")
        expired = db.session.get(SlotOffer, first_id)
        assert expired.status == OfferStatus.EXPIRED
        assert text.sent_at >= due  # not before its time
        assert text.sent_at - due < timedelta(seconds=3)  # and not long after
        assert text.provider_sid.startswith("SB")  # the sandbox outbox
        db.session.remove()


def test_sqlite_refuses_a_double_booking_in_code(make_app, tmp_path):

    from recovery.availability.overlap import SlotTaken, ensure_free

    app = make_app(SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'demo.sqlite3'}", REDIS_URL=None)
    with app.app_context():
        upgrade()
        now = utcnow()
        s = scene(db.session, now, n_customers=2)
        opening = cancellation.cancel_appointment(db.session, s.booking.id, now=now).opening
        offering.offer_next(db.session, opening.id, now=now)
        # Staff book the freed time by hand before the customer answers.
        f.appointment(
            db.session,
            s.chair,
            s.customers[1],
            s.service,
            starts_at=opening.starts_at + timedelta(minutes=10),
        )
        with pytest.raises(SlotTaken):
            ensure_free(db.session, s.chair.id, opening.starts_at, opening.ends_at)
        result = accepting.accept_offer(
            db.session, openings.live_offer(db.session, opening.id).id, now=now
        )
        assert result.outcome is accepting.AcceptOutcome.TAKEN
        db.session.rollback()
        db.session.remove()
