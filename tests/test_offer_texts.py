"""An offer's text and its time to answer: the text goes out only while the offer is live,
and the customer's time to answer starts when the provider accepts the text, however long
it waited in the queue (real jobs on real PostgreSQL; the sandbox provider)."""

from datetime import timedelta

import pytest
from sqlalchemy import select

from jobs import tasks
from recovery.booking import cancellation
from recovery.effects import EffectKind
from recovery.models import Message, OfferStatus, OpeningStatus, SlotOffer
from recovery.offers import offering, openings
from tests.scenario import scene

TTL = timedelta(minutes=15)  # the scene's shop: offer_ttl_minutes


@pytest.fixture
def offered(session, clock, recorder):
    """An opening offered to the first customer; the offer's text waits in the queue."""
    s = scene(session, clock.now)
    opening = cancellation.cancel_appointment(session, s.booking.id, now=clock.now).opening
    offering.offer_next(session, opening.id, now=clock.now)
    session.commit()
    offer = openings.live_offer(session, opening.id)
    return s, opening, offer, text_of(session, offer)


def text_of(session, offer: SlotOffer) -> Message:
    return session.scalar(
        select(Message).where(Message.slot_offer_id == offer.id, Message.purpose == "offer")
    )


def expiry_runs(recorder, offer: SlotOffer) -> list:
    return [e.at for e in recorder.of_kind(EffectKind.EXPIRE_OFFER) if e.args == (offer.id,)]


# ------------------------------------------------------------------ only while live


@pytest.mark.parametrize(
    ("end", "reason"),
    [
        (
            lambda session, offer, now: (
                offering.decline_offer(session, offer.id, now)
                and offering.offer_next(session, offer.slot_opening_id, now)
            ),  # the decline's job
            "declined",
        ),
        (lambda session, offer, now: offering.expire_offer_now(session, offer.id, now), "expired"),
    ],
    ids=["declined", "cut short by staff"],
)
def test_a_text_whose_offer_ended_first_is_cancelled_not_sent(session, clock, offered, end, reason):
    _, opening, offer, text = offered
    end(session, offer, clock.now)
    session.commit()

    assert tasks.send_message(text.id) == "cancelled"

    session.expire_all()
    text = session.get(Message, text.id)
    assert text.status == "cancelled" and text.provider_sid is None and text.sent_at is None
    assert text.error == f"offer {reason} before its text went out"
    # The next customer's offer text is live and goes out.
    nxt = openings.live_offer(session, opening.id)
    assert nxt.customer_id != offer.customer_id
    assert tasks.send_message(text_of(session, nxt).id) == "sent"


def test_a_text_whose_slot_was_taken_is_cancelled(session, clock, offered):
    _, opening, _, text = offered
    opening.status = OpeningStatus.FILLED  # booked another way while the text waited
    session.commit()
    assert tasks.send_message(text.id) == "cancelled"
    session.expire_all()
    assert session.get(Message, text.id).error == "opening filled before its text"


# ------------------------------------------------------------------ the time to answer


def test_the_time_to_answer_starts_when_the_text_is_accepted(session, clock, recorder, offered):
    _, _, offer, text = offered
    queued_at = clock.now
    clock.advance(minutes=5)  # a slow queue

    assert tasks.send_message(text.id) == "sent"

    session.expire_all()
    accepted_at = session.get(Message, text.id).sent_at
    assert accepted_at == queued_at + timedelta(minutes=5)
    offer = session.get(SlotOffer, offer.id)
    assert offer.expires_at == accepted_at + TTL
    # The exact-time expiry moves with it (the dispatcher's stable id replaces the first).
    assert expiry_runs(recorder, offer)[-1] == accepted_at + TTL
    # The run asked for at queueing time finds the offer not due, and the sweep leaves it.
    clock.advance(minutes=10)  # queued_at + TTL
    assert tasks.expire_offer(offer.id) == "not due yet"
    assert tasks.sweep()["expired_offers"] == 0
    clock.advance(minutes=5)  # accepted_at + TTL
    assert tasks.expire_offer(offer.id).startswith("expired")
    session.expire_all()
    assert session.get(SlotOffer, offer.id).status == OfferStatus.EXPIRED


def test_an_offer_does_not_run_out_while_its_text_waits(session, clock, recorder, offered):
    _, _, offer, text = offered
    clock.advance(minutes=16)  # past the first deadline; the provider was down

    assert tasks.expire_offer(offer.id) == "waiting for its text to be sent"
    session.expire_all()
    offer = session.get(SlotOffer, offer.id)
    assert offer.status == OfferStatus.SENT
    assert expiry_runs(recorder, offer)[-1] == offer.expires_at == clock.now + TTL

    clock.advance(minutes=2)
    assert tasks.send_message(text.id) == "sent"
    session.expire_all()
    assert session.get(SlotOffer, offer.id).expires_at == clock.now + TTL


def test_an_unsent_offer_still_runs_out_inside_the_lead_time(session, clock, offered):
    """Waiting for its text never holds a slot past the point where it can be offered."""
    s, opening, offer, text = offered
    clock.now = opening.starts_at - timedelta(minutes=s.shop.min_lead_minutes - 1)
    assert tasks.expire_offer(offer.id).startswith("expired")
    session.expire_all()
    assert session.get(SlotOffer, offer.id).status == OfferStatus.EXPIRED
    assert tasks.send_message(text.id) == "cancelled"
