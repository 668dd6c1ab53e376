"""The send job: the real Twilio SDK against a fake Twilio on loopback.

Never twice to the customer: a message is claimed (``sending``, committed) before the
provider is called; after an unclear failure the next attempt looks it up at the provider
and sends again only when the provider does not have it.
"""

from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from jobs import tasks
from recovery.db import db, utcnow
from recovery.effects import DISPATCHER_EXTENSION, EffectKind
from recovery.messaging.gateway import (
    SENDER_EXTENSION,
    TemporarySendError,
    TwilioSender,
    UncertainSendError,
    sender_for,
)
from recovery.messaging.outbox import Purpose, deliver, queue_sms
from recovery.models import Message
from tests import factories as f
from tests.conftest import truncate_all
from tests.fake_twilio import FakeTwilio
from tests.processes import free_port
from tests.support import RecordingDispatcher, installed

CLIENT_TIMEOUT = 0.5  # seconds the sender waits for Twilio's answer in these tests
LATE = 3.0  # seconds the fake sits on an accepted message's answer: past the timeout


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


# ------------------------------------------------------------------ never twice


def impatient_sender(fake: FakeTwilio, base_url: str | None = None) -> TwilioSender:
    """The app's real sender, with a short client timeout so a late answer times out."""
    return TwilioSender(
        fake.account_sid, fake.auth_token, base_url or fake.base_url, timeout=CLIENT_TIMEOUT
    )


@pytest.fixture
def impatient(twilio_app, fake_twilio) -> Iterator[RecordingDispatcher]:
    """The app's sender times out quickly; dispatched effects are recorded, not queued."""
    sender = impatient_sender(fake_twilio)
    with (
        installed(twilio_app, SENDER_EXTENSION, sender),
        installed(twilio_app, DISPATCHER_EXTENSION, RecordingDispatcher()) as recorder,
    ):
        yield recorder
    sender.close()


def age(app, message_id: int, seconds: int = 31) -> None:
    """Make the message look as old as a sweep a while later would find it."""
    with app.app_context():
        then = utcnow() - timedelta(seconds=seconds)
        db.session.execute(
            update(Message).where(Message.id == message_id).values(created_at=then, sending_at=then)
        )
        db.session.commit()


def sweep_and_run_sends(app, recorder: RecordingDispatcher) -> list[str]:
    """The periodic sweep, then the send jobs it asked for."""
    recorder.clear()
    with app.app_context():
        tasks.sweep()
        return [tasks.send_message(*e.args) for e in recorder.of_kind(EffectKind.SEND_MESSAGE)]


def test_a_late_answer_after_acceptance_is_looked_up_not_sent_again(
    twilio_app, fake_twilio, queued, impatient
):
    """Twilio accepts the text and answers after our timeout: the sweep's attempt finds it
    at Twilio, RQ's retry and a later sweep find nothing left to do. One text."""
    message_id, customer = queued
    fake_twilio.answer_late(LATE)
    with twilio_app.app_context(), pytest.raises(UncertainSendError):
        tasks.send_message(message_id)
    assert len(fake_twilio.messages) == 1  # Twilio has it; we do not know
    row = reload(twilio_app, message_id)
    assert row.status == "sending" and row.provider_sid is None and row.send_attempts == 1

    age(twilio_app, message_id)
    assert sweep_and_run_sends(twilio_app, impatient) == ["found at the provider"]
    with twilio_app.app_context():
        assert tasks.send_message(message_id) == "nothing to send"  # RQ's retry
    assert sweep_and_run_sends(twilio_app, impatient) == []

    [sent] = fake_twilio.messages
    assert sent["to"] == customer.phone
    assert fake_twilio.create_attempts == 1
    row = reload(twilio_app, message_id)
    assert row.status == "sent" and row.provider_sid == sent["sid"]
    assert row.error is None


def test_a_connection_lost_after_acceptance_is_looked_up_by_the_retry(
    twilio_app, fake_twilio, queued, impatient
):
    message_id, _ = queued
    fake_twilio.hang_up_after_accept()
    with twilio_app.app_context(), pytest.raises(UncertainSendError):
        tasks.send_message(message_id)
    with twilio_app.app_context():
        assert tasks.send_message(message_id) == "found at the provider"  # RQ's retry
    assert sweep_and_run_sends(twilio_app, impatient) == []
    [sent] = fake_twilio.messages
    assert reload(twilio_app, message_id).provider_sid == sent["sid"]


def test_an_unclear_attempt_twilio_never_took_is_sent_by_the_retry(
    twilio_app, fake_twilio, queued, impatient
):
    """The request hung and Twilio dropped it: the lookup finds nothing, so it is sent."""
    message_id, _ = queued
    fake_twilio.hold()
    with twilio_app.app_context(), pytest.raises(UncertainSendError):
        tasks.send_message(message_id)
    fake_twilio.release(drop=True)
    assert fake_twilio.messages == []
    with twilio_app.app_context():
        assert tasks.send_message(message_id) == "sent"
    [sent] = fake_twilio.messages
    assert fake_twilio.lookups == 1
    assert reload(twilio_app, message_id).provider_sid == sent["sid"]


def test_a_lookup_never_takes_the_text_of_another_message(
    twilio_app, fake_twilio, queued, impatient
):
    """Two rows with the same text to the same phone: the first went out; the second's
    unclear attempt was dropped. Its lookup sees the first one's text, which is not its."""
    first_id, customer = queued
    with twilio_app.app_context():
        first = db.session.get(Message, first_id)
        shop = first.shop
        twin = queue_sms(db.session, shop, customer, first.body, Purpose.OFFER)
        db.session.commit()
        twin_id = twin.id
        assert tasks.send_message(first_id) == "sent"
    fake_twilio.hold()
    with twilio_app.app_context(), pytest.raises(UncertainSendError):
        tasks.send_message(twin_id)
    fake_twilio.release(drop=True)
    with twilio_app.app_context():
        assert tasks.send_message(twin_id) == "sent"
    sids = [m["sid"] for m in fake_twilio.messages]
    assert len(sids) == 2
    assert [reload(twilio_app, i).provider_sid for i in (first_id, twin_id)] == sids


def test_a_refused_connection_is_clear_and_simply_retried(
    twilio_app, fake_twilio, queued, impatient
):
    """Nothing listens: the request never left, so the retry sends without asking first."""
    message_id, _ = queued
    nowhere = impatient_sender(fake_twilio, f"http://127.0.0.1:{free_port()}")
    try:
        with (
            installed(twilio_app, SENDER_EXTENSION, nowhere),
            twilio_app.app_context(),
            pytest.raises(TemporarySendError) as failure,
        ):
            tasks.send_message(message_id)
    finally:
        nowhere.close()
    assert not isinstance(failure.value, UncertainSendError)
    assert reload(twilio_app, message_id).status == "queued"
    with twilio_app.app_context():
        assert tasks.send_message(message_id) == "sent"
    assert len(fake_twilio.messages) == 1 and fake_twilio.lookups == 0


def test_a_batch_is_claimed_at_once_leaving_what_is_held_or_waits(app, committed):
    """``claim_many`` takes a send job's texts in three statements. A queued text is
    claimed; one left ``sending`` by an earlier attempt is claimed to be looked up first;
    one whose conversation has an earlier unsent text waits; one another attempt holds
    right now, or one already sent, is left alone."""
    from recovery.messaging import outbox

    shop = f.shop(committed)
    phones = [f.customer(committed, shop) for _ in range(4)]
    queued, unclear, earlier, later, held, sent = (
        queue_sms(committed, shop, customer, body, Purpose.OFFER).id
        for customer, body in zip(
            [phones[0], phones[1], phones[2], phones[2], phones[3], phones[3]],
            ["Queued.", "Unclear.", "Earlier.", "Later.", "Held.", "Sent."],
            strict=True,
        )
    )
    first_claim = utcnow() - timedelta(seconds=40)
    committed.execute(
        update(Message)
        .where(Message.id == unclear)
        .values(status="sending", send_attempts=1, sending_at=first_claim)
    )
    committed.execute(update(Message).where(Message.id == sent).values(status="sent"))
    committed.commit()

    with db.engine.connect() as other:  # another attempt, holding one row
        other.execute(select(Message.id).where(Message.id == held).with_for_update())
        claims, waiting = outbox.claim_many(
            committed, [queued, unclear, later, held, sent], utcnow()
        )
        committed.commit()
        other.rollback()

    assert [(c.message_id, c.attempt, c.look_up_first) for c in claims] == [
        (queued, 1, False),
        (unclear, 2, True),
    ]
    assert waiting == [later]
    committed.expire_all()
    rows = {m.id: m for m in committed.scalars(select(Message))}
    assert [rows[i].status for i in (queued, unclear, earlier, later, held, sent)] == [
        "sending", "sending", "queued", "queued", "queued", "sent"
    ]  # fmt: skip
    assert rows[unclear].sending_at == first_claim  # the first claim's time bounds a lookup
    assert rows[queued].sending_at is not None and rows[later].send_attempts == 0
