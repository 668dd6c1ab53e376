"""The send job: the real Twilio SDK against a fake Twilio on loopback."""

import pytest
from sqlalchemy import select

from jobs import tasks
from recovery.db import db
from recovery.messaging.gateway import TemporarySendError, sender_for
from recovery.messaging.outbox import Purpose, deliver, queue_sms
from recovery.models import Message
from tests import factories as f
from tests.conftest import truncate_all


@pytest.fixture
def queued(twilio_app, redis_conn):
    """A committed, queued offer text; tables emptied afterwards."""
    with twilio_app.app_context():
        shop = f.shop(db.session)
        customer = f.customer(db.session, shop)
        message = queue_sms(
            db.session, shop, customer, "A slot opened today at 15:00.", Purpose.OFFER
        )
        db.session.commit()
        yield message.id, customer
        db.session.remove()
    truncate_all(twilio_app)


def reload(app, message_id) -> Message:
    with app.app_context():
        message = db.session.get(Message, message_id)
        db.session.expunge(message)
        return message


def test_sends_once_through_the_provider(twilio_app, fake_twilio, queued):
    message_id, customer = queued
    with twilio_app.app_context():
        assert tasks.send_message(message_id) == "sent"
        assert tasks.send_message(message_id) == "nothing to send"  # a duplicate job
    sent = fake_twilio.messages
    assert len(sent) == 1
    assert sent[0]["to"] == customer.phone and sent[0]["from_"] == "+447700900000"
    message = reload(twilio_app, message_id)
    assert message.status == "sent" and message.provider_sid == sent[0]["sid"]


def test_provider_trouble_keeps_it_queued_for_the_retry(twilio_app, fake_twilio, queued):
    message_id, _ = queued
    fake_twilio.fail_next(2, status=503)
    with twilio_app.app_context():
        for _ in range(2):
            with pytest.raises(TemporarySendError):
                tasks.send_message(message_id)
            db.session.rollback()
            assert reload(twilio_app, message_id).status == "queued"
        assert tasks.send_message(message_id) == "sent"
    assert len(fake_twilio.messages) == 1


def test_a_refused_number_is_marked_failed_not_retried(twilio_app, fake_twilio, redis_conn):
    with twilio_app.app_context():
        shop = f.shop(db.session)
        customer = f.customer(db.session, shop)
        message = queue_sms(db.session, shop, customer, "hello", Purpose.OFFER)
        message.to_number = "12345"  # not E.164: Twilio answers 400 / 21211
        db.session.commit()
        assert deliver(db.session, message.id, sender_for(twilio_app), message.created_at) == (
            "failed"
        )
        db.session.commit()
        assert "21211" in db.session.scalar(select(Message.error))
        db.session.remove()
    truncate_all(twilio_app)
    assert fake_twilio.messages == []
