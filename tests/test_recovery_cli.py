"""``flask recovery ...``: what an operator types and reads, on real PostgreSQL.

The commands use ``db.session``, which the ``session`` fixture binds to the test's outer
transaction: rows made by the factories are visible, and commits only release savepoints.
"""

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from recovery.effects import EffectKind
from recovery.models import Message, OfferStatus, SlotOffer, SlotOpening
from tests.scenario import scene, send_texts


@pytest.fixture
def s(session, clock, recorder):
    return scene(session, clock.now)


@pytest.fixture
def run(app):
    runner = app.test_cli_runner()

    def invoke(*args: str, ok: bool = True):
        result = runner.invoke(args=["recovery", *map(str, args)])
        if ok:
            assert result.exit_code == 0, result.output
        return result

    return invoke


def opening_count(session) -> int:
    return session.scalar(select(func.count()).select_from(SlotOpening))


def cancel(run, session, s) -> SlotOpening:
    run("cancel", s.booking.id)
    return session.scalar(
        select(SlotOpening).where(SlotOpening.source_appointment_id == s.booking.id)
    )


def test_cancel_opens_one_slot_and_says_so_every_time(session, s, run, recorder):
    first = run("cancel", s.booking.id)
    opening = session.scalar(select(SlotOpening))
    expected = f"appointment {s.booking.id}: slot opening #{opening.id} created\n"
    assert first.output == expected

    again = run("cancel", s.booking.id)
    assert again.output == expected
    assert opening_count(session) == 1
    assert [e.args for e in recorder.of_kind(EffectKind.OFFER_NEXT)] == [(opening.id,)]


def test_offer_next_offers_the_first_customer_in_line(session, s, run):
    opening = cancel(run, session, s)

    result = run("offer-next", opening.id)

    assert result.output == f"opening {opening.id}: offered\n"
    offer = session.scalar(select(SlotOffer).where(SlotOffer.slot_opening_id == opening.id))
    assert offer.customer_id == s.customers[0].id
    assert offer.status == OfferStatus.SENT


def test_offer_next_again_while_the_offer_is_live_changes_nothing(session, s, run):
    opening = cancel(run, session, s)
    run("offer-next", opening.id)

    result = run("offer-next", opening.id)

    assert result.output == f"opening {opening.id}: an offer is already live\n"
    assert session.scalar(select(func.count()).select_from(SlotOffer)) == 1


def test_status_prints_the_opening_and_its_timeline(session, s, run, clock):
    opening = cancel(run, session, s)
    run("offer-next", opening.id)
    offer = session.scalar(select(SlotOffer))
    message = session.scalar(select(Message).where(Message.slot_offer_id == offer.id))
    customer = s.customers[0]

    result = run("status", opening.id)
    lines = result.output.splitlines()

    starts = opening.starts_at.strftime("%Y-%m-%d %H:%M")
    assert lines[0] == f"opening #{opening.id}: open, resource {s.chair.name}, {starts} UTC"
    timeline = "\n".join(lines[1:])
    assert f"opened from cancelled booking #{s.booking.id}" in timeline
    assert f"offer #{offer.id} to {customer.name} ({customer.phone}), expires" in timeline
    assert f"-> {customer.phone} [offer, queued] {message.body}" in timeline
    assert "A slot opened tomorrow at 09:00. Reply YES to book." in message.body


def test_status_of_an_unknown_opening_fails_with_a_clear_message(session, run):
    result = run("status", 999999, ok=False)
    assert result.exit_code != 0
    assert "no opening 999999" in result.output


def test_sweep_expires_a_due_offer_and_offers_the_next_customer(session, s, run, clock):
    opening = cancel(run, session, s)
    run("offer-next", opening.id)
    first = session.scalar(select(SlotOffer))
    assert first.customer_id == s.customers[0].id
    send_texts(session)  # a running server's send job: the time to answer starts

    clock.advance(minutes=16)
    result = run("sweep")

    assert "'expired_offers': 1" in result.output
    session.expire_all()  # the sweep worked in its own session
    offers = session.scalars(
        select(SlotOffer).where(SlotOffer.slot_opening_id == opening.id).order_by(SlotOffer.id)
    ).all()
    assert [(o.customer_id, o.status) for o in offers] == [
        (s.customers[0].id, OfferStatus.EXPIRED),
        (s.customers[1].id, OfferStatus.SENT),
    ]
    assert offers[1].sent_at == clock.now
    assert offers[1].expires_at == clock.now + timedelta(minutes=15)


def test_sweep_before_anything_is_due_changes_nothing(session, s, run, clock):
    opening = cancel(run, session, s)
    run("offer-next", opening.id)

    clock.advance(minutes=14)
    result = run("sweep")

    assert "'expired_offers': 0" in result.output
    session.expire_all()
    offer = session.scalar(select(SlotOffer))
    assert (offer.customer_id, offer.status) == (s.customers[0].id, OfferStatus.SENT)
