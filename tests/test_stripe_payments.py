"""Money rules through the real Stripe SDK against localstripe on loopback.

Every test runs the loop for real (cancel -> offer -> YES), opens the winner's payment
page (which creates the PaymentIntent at localstripe), lets the customer pay or fail with
the SDK, posts the signed webhook events Stripe would send, and runs the jobs they ask for.
"""

from __future__ import annotations

import json
import threading
import urllib.parse
import urllib.request
from datetime import UTC, datetime, timedelta

import pytest
import stripe
from sqlalchemy import func, select
from werkzeug.serving import make_server

from jobs.dispatch import JOBS, resolve
from recovery.booking import cancellation
from recovery.db import CLOCK_EXTENSION, db
from recovery.effects import DISPATCHER_EXTENSION, EffectKind
from recovery.models import (
    Appointment,
    Message,
    OfferStatus,
    Payment,
    ProviderEvent,
    Refund,
    SlotOffer,
    SlotOpening,
)
from recovery.offers import accepting
from recovery.payments import refunds
from tests.conftest import STRIPE_WEBHOOK_SECRET, truncate_all
from tests.processes import free_port, wait_until
from tests.scenario import scene
from tests.stripe_support import DECLINED_CARD, Customer, deliver, event_for, sign
from tests.support import Clock, Driver, RecordingDispatcher, installed


class World:
    def __init__(self, app, localstripe: str) -> None:
        self.app = app
        self.clock = Clock(datetime(2026, 1, 12, 9, 0, tzinfo=UTC))
        self.recorder = RecordingDispatcher()
        self.driver = Driver(app, self.recorder, self.clock)
        self.client = app.test_client()
        self.customer = Customer(localstripe)
        self.s = None
        self.held = []

    # -- the loop, up to a YES that wins
    def win(self):
        s = self.s
        cancellation.cancel_appointment(db.session, s.booking.id, now=self.clock.now)
        db.session.commit()
        self.driver.run_due()
        offer = db.session.scalar(select(SlotOffer).where(SlotOffer.status == OfferStatus.SENT))
        won = accepting.accept_offer(db.session, offer.id, now=self.clock.now)
        db.session.commit()
        assert won.outcome == accepting.AcceptOutcome.WON
        return won.appointment.id, won.payment.id

    def page(self, payment_id: int):
        token = db.session.get(Payment, payment_id).token
        response = self.client.get(f"/pay/{token}")
        db.session.expire_all()
        return response

    def intent_of(self, payment_id: int) -> str:
        db.session.expire_all()
        return db.session.get(Payment, payment_id).provider_ref

    def post(self, event: dict, **kw):
        response = deliver(self.client, event, STRIPE_WEBHOOK_SECRET, **kw)
        db.session.expire_all()
        return response

    def run_jobs(self):
        ran = self.driver.run_due()
        db.session.expire_all()
        return [e.kind for e in ran]

    def run_jobs_except(self, kind: EffectKind):
        """Run what is due, holding back one kind of job (as if its worker were slow)."""
        while True:
            self.held += [e for e in self.recorder.effects if e.kind == kind]
            self.recorder.effects[:] = [e for e in self.recorder.effects if e.kind != kind]
            due = self.driver.due()
            if not due:
                return
            self.recorder.effects.remove(due[0])
            resolve(JOBS[due[0].kind].func)(*due[0].args)

    def texts_to(self, customer) -> list[str]:
        return db.session.scalars(
            select(Message.body)
            .where(Message.to_number == customer.phone, Message.purpose != "reply")
            .order_by(Message.id)
        ).all()


@pytest.fixture
def world(stripe_app, localstripe, redis_conn):
    w = World(stripe_app, localstripe)
    with (
        installed(stripe_app, CLOCK_EXTENSION, w.clock),
        installed(stripe_app, DISPATCHER_EXTENSION, w.recorder),
        stripe_app.app_context(),
    ):
        w.s = scene(db.session, w.clock.now, n_customers=2)
        db.session.commit()
        yield w
        db.session.remove()
    truncate_all(stripe_app)


def state(appointment_id: int, payment_id: int):
    appt = db.session.get(Appointment, appointment_id)
    opening = db.session.get(SlotOpening, appt.source_slot_opening_id)
    offer = db.session.scalar(
        select(SlotOffer).where(
            SlotOffer.slot_opening_id == opening.id, SlotOffer.customer_id == appt.customer_id
        )
    )
    return appt.status, opening.status, offer.status, db.session.get(Payment, payment_id).status


# ---------------------------------------------------------------- the payment page


def test_page_names_the_booking_and_hands_over_to_stripe(world):
    _, payment_id = world.win()
    response = world.page(payment_id)
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert world.s.shop.name in html and world.s.service.name in html
    assert "Tuesday 13 January, 09:00" in html  # London time
    assert "£20" in html
    assert "https://js.stripe.com/v3/" in html
    intent = world.customer.intent(world.intent_of(payment_id))
    assert intent.amount == 2000 and intent.currency == "gbp"
    assert intent.client_secret in html
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Referrer-Policy"] == "no-referrer"

    # A second visit reuses the same intent.
    world.page(payment_id)
    assert world.intent_of(payment_id) == intent.id


def test_unknown_token_is_404(world):
    assert world.client.get("/pay/not-a-real-token").status_code == 404
    assert world.client.get("/pay/" + "x" * 200).status_code == 404


def test_page_says_when_the_payment_service_is_unreachable(world, make_app):
    appointment_id, payment_id = world.win()
    offline = make_app(
        STRIPE_SECRET_KEY="sk_test_local",
        STRIPE_WEBHOOK_SECRET=STRIPE_WEBHOOK_SECRET,
        STRIPE_API_BASE_URL=f"http://127.0.0.1:{free_port()}",  # nothing listens there
    )
    with installed(offline, CLOCK_EXTENSION, world.clock):
        token = db.session.get(Payment, payment_id).token
        response = offline.test_client().get(f"/pay/{token}")
    assert response.status_code == 503
    assert "couldn't reach the payment service" in response.get_data(as_text=True)
    db.session.expire_all()
    assert world.intent_of(payment_id) is None  # nothing half-made
    assert state(appointment_id, payment_id)[0] == "pending_payment"


# ---------------------------------------------------------------- outcomes


def test_paid_deposit_books_the_slot_and_texts_the_customer(world):
    appointment_id, payment_id = world.win()
    world.page(payment_id)
    intent_id = world.intent_of(payment_id)
    paid = world.customer.pay(intent_id)
    assert paid.status == "succeeded"

    response = world.post(event_for(paid, "payment_intent.succeeded"))
    assert response.status_code == 200
    assert world.run_jobs()[0] == EffectKind.SYNC_PAYMENT

    assert state(appointment_id, payment_id) == ("booked", "filled", "accepted", "succeeded")
    winner = world.s.customers[0]
    assert "Payment received. You're booked tomorrow at 09:00." in world.texts_to(winner)[-1]
    assert "Payment received" in world.page(payment_id).get_data(as_text=True)


def test_declined_card_releases_the_hold_and_offers_the_next_customer(world):
    appointment_id, payment_id = world.win()
    world.page(payment_id)
    intent_id = world.intent_of(payment_id)
    with pytest.raises(stripe.CardError):
        world.customer.pay(intent_id, card=DECLINED_CARD)

    world.post(event_for(world.customer.intent(intent_id), "payment_intent.payment_failed"))
    world.run_jobs()

    assert state(appointment_id, payment_id) == ("cancelled", "open", "declined", "failed")
    next_offer = db.session.scalar(select(SlotOffer).where(SlotOffer.status == OfferStatus.SENT))
    assert next_offer.customer_id == world.s.customers[1].id
    # The intent was cancelled, so the customer cannot pay for a slot they lost.
    assert world.customer.intent(intent_id).status == "canceled"
    assert "no longer held for you" in world.page(payment_id).get_data(as_text=True)
    assert "payment didn't go through" in world.texts_to(world.s.customers[0])[-1]


def test_abandoned_payment_is_released_and_cancelled_at_stripe(world):
    appointment_id, payment_id = world.win()
    world.page(payment_id)
    intent_id = world.intent_of(payment_id)

    world.clock.advance(minutes=14)
    assert EffectKind.RELEASE_HOLD not in world.run_jobs()  # not due yet
    world.clock.advance(minutes=1)
    ran = world.run_jobs()
    assert EffectKind.RELEASE_HOLD in ran and EffectKind.CANCEL_PAYMENT in ran

    assert state(appointment_id, payment_id) == ("cancelled", "open", "declined", "canceled")
    assert world.customer.intent(intent_id).status == "canceled"
    with pytest.raises(stripe.InvalidRequestError):
        world.customer.pay(intent_id)
    assert db.session.get(Payment, payment_id).provider_closed_at is not None
    winner = world.s.customers[0]
    assert "didn't receive your payment in time" in world.texts_to(winner)[-1]


def test_intent_canceled_event_releases_like_a_failure(world):
    appointment_id, payment_id = world.win()
    world.page(payment_id)
    intent_id = world.intent_of(payment_id)
    canceled = world.customer.client.v1.payment_intents.cancel(intent_id)  # e.g. in the dashboard
    world.post(event_for(canceled, "payment_intent.canceled"))
    world.run_jobs()
    assert state(appointment_id, payment_id)[:3] == ("cancelled", "open", "declined")


def test_overdue_hold_is_released_when_its_page_is_opened(world):
    appointment_id, payment_id = world.win()
    world.clock.advance(minutes=16)  # the release job has not run yet
    html = world.page(payment_id).get_data(as_text=True)
    assert "no longer held for you" in html
    assert world.intent_of(payment_id) is None  # no intent was started for a lost slot
    assert state(appointment_id, payment_id)[0] == "cancelled"


def test_late_payment_after_release_is_refunded_in_full_and_the_customer_told(world):
    appointment_id, payment_id = world.win()
    world.page(payment_id)
    intent_id = world.intent_of(payment_id)
    world.clock.advance(minutes=16)
    # The hold is released; the customer pays before the cancellation reaches Stripe.
    world.run_jobs_except(EffectKind.CANCEL_PAYMENT)
    assert state(appointment_id, payment_id)[0] == "cancelled"
    paid = world.customer.pay(intent_id)

    world.post(event_for(paid, "payment_intent.succeeded"))
    world.run_jobs()

    db.session.expire_all()
    payment = db.session.get(Payment, payment_id)
    assert db.session.get(Appointment, appointment_id).status == "cancelled"
    assert payment.status == "succeeded" and payment.refunded_minor == 2000
    assert [r.status for r in payment.refunds] == ["succeeded"]
    assert world.customer.refunds(intent_id) == [2000]
    texts = world.texts_to(world.s.customers[0])
    assert "came after the slot was released, so we're refunding £20 in full" in texts[-1]
    assert "refunded in full" in world.page(payment_id).get_data(as_text=True)

    # The held-back cancellation finally runs: too late to cancel, and no second refund.
    world.recorder.effects.extend(world.held)
    world.run_jobs()
    assert world.customer.refunds(intent_id) == [2000]
    assert db.session.get(Payment, payment_id).provider_closed_at is not None


# ---------------------------------------------------------------- deliveries


def _declined_then_paid(world):
    """The customer's first card is declined, the second succeeds (before any sync)."""
    appointment_id, payment_id = world.win()
    world.page(payment_id)
    intent_id = world.intent_of(payment_id)
    with pytest.raises(stripe.CardError):
        world.customer.pay(intent_id, card=DECLINED_CARD)
    failed = event_for(world.customer.intent(intent_id), "payment_intent.payment_failed")
    paid = event_for(world.customer.pay(intent_id), "payment_intent.succeeded")
    return appointment_id, payment_id, failed, paid


@pytest.mark.parametrize("order", ["in order", "reversed"])
def test_each_event_three_times_in_either_order_ends_in_one_state(world, order):
    appointment_id, payment_id, failed, paid = _declined_then_paid(world)
    events = [failed, paid] if order == "in order" else [paid, failed]
    answers = []
    for event in events:
        for _ in range(3):
            answers.append(world.post(event).get_json()["outcome"])
            world.run_jobs()  # each delivery's job runs before the next arrives
    assert answers.count("duplicate") == 4

    assert state(appointment_id, payment_id) == ("booked", "filled", "accepted", "succeeded")
    assert db.session.scalar(select(func.count()).select_from(ProviderEvent)) == 2
    booked = [t for t in world.texts_to(world.s.customers[0]) if "Payment received" in t]
    assert len(booked) == 1
    assert db.session.get(Payment, payment_id).refunds == []


def test_unknown_event_types_and_unknown_intents_get_200_and_change_nothing(world):
    appointment_id, payment_id = world.win()
    other = world.customer.paid_intent(500)
    for event in (
        event_for({"id": "cus_123", "object": "customer"}, "customer.created"),
        event_for(world.customer.intent(other), "payment_intent.succeeded"),
    ):
        response = world.post(event)
        assert response.status_code == 200
    assert world.recorder.of_kind(EffectKind.SYNC_PAYMENT) == []
    assert state(appointment_id, payment_id)[0] == "pending_payment"


def _foreign_paid_intent(world, amount_minor: int, metadata: dict) -> str:
    """Another deployment's intent on the same Stripe account, paid by its customer."""
    intent = world.customer.client.v1.payment_intents.create(
        params={
            "amount": amount_minor,
            "currency": "gbp",
            "payment_method_types": ["card"],
            "metadata": metadata,
        }
    )
    world.customer.pay(intent.id)
    return intent.id


@pytest.mark.parametrize("tag", [None, "0" * 64], ids=["row id only", "made-up tag"])
def test_an_event_for_a_foreign_intent_never_settles_our_payment(world, caplog, tag):
    """Another deployment's intent names our payment by its (guessable) row id: a
    correctly signed event about it is answered 200, recorded and ignored."""
    appointment_id, payment_id = world.win()  # the page not opened yet: no intent of ours
    amount = db.session.get(Payment, payment_id).amount_minor
    metadata = {"payment_id": str(payment_id), "appointment_id": str(appointment_id)}
    if tag is not None:
        metadata["payment_tag"] = tag
    foreign = _foreign_paid_intent(world, amount, metadata)
    event = event_for(world.customer.intent(foreign), "payment_intent.succeeded")

    with caplog.at_level("WARNING", logger="recovery.payments.events"):
        response = world.post(event)
    assert response.status_code == 200
    assert response.get_json()["outcome"] == "ignored: not our intent"
    assert f"intent {foreign} is not ours" in caplog.text
    assert db.session.scalar(select(ProviderEvent.event_id)) == event["id"]
    assert world.recorder.of_kind(EffectKind.SYNC_PAYMENT) == []
    world.run_jobs()
    assert state(appointment_id, payment_id) == (
        "pending_payment",
        "filled",
        "accepted",
        "pending",
    )
    assert db.session.get(Payment, payment_id).provider_ref is None
    assert not [t for t in world.texts_to(world.s.customers[0]) if "You're booked" in t]


def test_our_intent_whose_id_was_lost_is_still_found_by_its_tag(world):
    """The page created the intent but its commit was lost: the intent's metadata carries
    the payment's secret tag, so its event still settles the payment."""
    appointment_id, payment_id = world.win()
    world.page(payment_id)
    intent_id = world.intent_of(payment_id)
    assert world.customer.intent(intent_id).metadata["payment_tag"]
    db.session.get(Payment, payment_id).provider_ref = None  # the lost commit
    db.session.commit()

    paid = world.customer.pay(intent_id)
    assert world.post(event_for(paid, "payment_intent.succeeded")).status_code == 200
    world.run_jobs()
    assert state(appointment_id, payment_id) == ("booked", "filled", "accepted", "succeeded")
    assert world.intent_of(payment_id) == intent_id


@pytest.mark.parametrize(
    "forgery",
    ["no header", "wrong secret", "tampered body", "stale timestamp", "not json"],
)
def test_forged_or_missing_signature_is_refused_and_changes_nothing(world, forgery):
    appointment_id, payment_id = world.win()
    world.page(payment_id)
    intent_id = world.intent_of(payment_id)
    event = event_for(world.customer.pay(intent_id), "payment_intent.succeeded")
    payload = json.dumps(event).encode()
    headers = {"Stripe-Signature": sign(payload, STRIPE_WEBHOOK_SECRET)}
    if forgery == "no header":
        headers = {}
    elif forgery == "wrong secret":
        headers = {"Stripe-Signature": sign(payload, "whsec_someone_else")}
    elif forgery == "tampered body":
        payload = payload.replace(b'"amount": 2000', b'"amount": 1')
    elif forgery == "stale timestamp":
        headers = {"Stripe-Signature": sign(payload, STRIPE_WEBHOOK_SECRET, timestamp=1)}
    elif forgery == "not json":
        payload = b"{not json"
        headers = {"Stripe-Signature": sign(payload, STRIPE_WEBHOOK_SECRET)}
    response = world.client.post(
        "/webhooks/stripe", data=payload, headers=headers, content_type="application/json"
    )
    assert response.status_code == 400
    db.session.expire_all()
    assert db.session.scalar(select(func.count()).select_from(ProviderEvent)) == 0
    assert world.recorder.of_kind(EffectKind.SYNC_PAYMENT) == []
    assert state(appointment_id, payment_id)[0] == "pending_payment"


# ---------------------------------------------------------------- refunds


def _stripe_paid_booking(world, hours_ahead: float):
    """An ordinary booking whose deposit was paid through Stripe."""
    booking = world.s.booking
    booking.starts_at = world.clock.now + timedelta(hours=hours_ahead)
    booking.ends_at = booking.starts_at + timedelta(minutes=30)
    payment = booking.payments[0]
    payment.provider = "stripe"
    payment.provider_ref = world.customer.paid_intent(payment.amount_minor)
    db.session.commit()
    return booking, payment


@pytest.mark.parametrize(
    ("hours_ahead", "refunded"), [(24, 2000), (48, 2000), (23.9, 1000), (2, 1000)]
)
def test_cancelling_a_paid_booking_refunds_by_the_shops_policy(world, hours_ahead, refunded):
    booking, payment = _stripe_paid_booking(world, hours_ahead)
    cancellation.cancel_appointment(db.session, booking.id, now=world.clock.now)
    db.session.commit()
    world.run_jobs()
    world.run_jobs()  # a second run (a retried job) refunds nothing more

    payment = db.session.get(Payment, payment.id)
    assert payment.refunded_minor == refunded
    assert world.customer.refunds(payment.provider_ref) == [refunded]
    assert [r.idempotency_key for r in payment.refunds] == [f"cancel-{payment.id}"]
    assert f"We're refunding £{refunded // 100}" in world.texts_to(world.s.owner)[0]


def test_refund_policy_follows_the_shops_settings(world):
    world.s.shop.full_refund_hours = 48
    world.s.shop.late_refund_percent = 25
    booking, payment = _stripe_paid_booking(world, 30)
    cancellation.cancel_appointment(db.session, booking.id, now=world.clock.now)
    db.session.commit()
    world.run_jobs()
    assert world.customer.refunds(payment.provider_ref) == [500]


def test_staff_refunds_never_exceed_what_was_paid(world):
    _, payment = _stripe_paid_booking(world, 72)
    first = refunds.request_refund(
        db.session, payment.id, 1500, "goodwill", "staff-a", now=world.clock.now
    )
    db.session.commit()
    # The same form submitted twice: one refund.
    again = refunds.request_refund(
        db.session, payment.id, 1500, "goodwill", "staff-a", now=world.clock.now
    )
    assert again.id == first.id
    with pytest.raises(refunds.RefundError, match="at most £5"):
        refunds.request_refund(db.session, payment.id, 501, "more", "staff-b")
    db.session.rollback()
    with pytest.raises(refunds.RefundError, match="more than zero"):
        refunds.request_refund(db.session, payment.id, 0, "nothing", "staff-c")
    db.session.rollback()
    refunds.request_refund(db.session, payment.id, 500, "the rest", "staff-d")
    db.session.commit()
    world.run_jobs()

    payment = db.session.get(Payment, payment.id)
    assert payment.refunded_minor == 2000 == payment.amount_minor
    assert world.customer.refunds(payment.provider_ref) == [500, 1500]
    assert [r.status for r in payment.refunds] == ["succeeded", "succeeded"]
    with pytest.raises(refunds.RefundError, match="at most £0"):
        refunds.request_refund(db.session, payment.id, 1, "one more", "staff-e")


def test_a_refund_the_gateway_refuses_is_failed_and_its_amount_released(world):
    _, payment = _stripe_paid_booking(world, 72)
    payment.provider_ref = "pi_does_not_exist"
    db.session.commit()
    refund = refunds.request_refund(db.session, payment.id, 800, "goodwill", "staff-x")
    db.session.commit()
    world.run_jobs()
    refund = db.session.get(Refund, refund.id)
    assert refund.status == "failed" and "stripe refused" in refund.error
    assert db.session.get(Payment, payment.id).refunded_minor == 0


def test_a_pending_payment_cannot_be_refunded(world):
    _, payment_id = world.win()
    with pytest.raises(refunds.RefundError, match="only a succeeded payment"):
        refunds.request_refund(db.session, payment_id, 100, "x", "staff-y")


def test_a_real_delivery_signed_by_the_stripe_fake_is_accepted_once(world, localstripe):
    """localstripe signs and posts its own ``payment_intent.succeeded`` to a live server."""
    port = free_port()
    server = make_server("127.0.0.1", port, world.app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        register = urllib.request.Request(  # noqa: S310 (loopback)
            f"{localstripe}/_config/webhooks/slot-recovery-{port}",
            data=urllib.parse.urlencode(
                {
                    "url": f"http://127.0.0.1:{port}/webhooks/stripe",
                    "secret": STRIPE_WEBHOOK_SECRET,
                    "events[]": "payment_intent.succeeded",
                }
            ).encode(),
            method="POST",
        )
        urllib.request.urlopen(register, timeout=5)  # noqa: S310 (loopback)
        appointment_id, payment_id = world.win()
        world.page(payment_id)
        world.customer.pay(world.intent_of(payment_id))

        def delivered():  # (events of earlier tests may arrive too: wait for ours)
            return (payment_id,) in [
                e.args for e in world.recorder.of_kind(EffectKind.SYNC_PAYMENT)
            ]

        wait_until(delivered, timeout=15, what="localstripe's webhook delivery")
    finally:
        server.shutdown()
        thread.join(5)
    world.run_jobs()
    assert state(appointment_id, payment_id) == ("booked", "filled", "accepted", "succeeded")


def test_a_payment_whose_event_never_came_is_confirmed_at_the_deadline_not_refunded(world):
    """The webhook (or its job) was lost: the release job asks Stripe before releasing."""
    appointment_id, payment_id = world.win()
    world.page(payment_id)
    world.customer.pay(world.intent_of(payment_id))  # no event is ever delivered
    world.clock.advance(minutes=16)
    world.run_jobs()
    assert state(appointment_id, payment_id) == ("booked", "filled", "accepted", "succeeded")
    assert db.session.get(Payment, payment_id).refunds == []
    assert "Payment received" in world.texts_to(world.s.customers[0])[-1]


def test_back_from_paying_the_page_confirms_before_the_webhook(world):
    appointment_id, payment_id = world.win()
    world.page(payment_id)
    world.customer.pay(world.intent_of(payment_id))
    html = world.page(payment_id).get_data(as_text=True)
    assert "We're confirming your booking now" in html
    world.run_jobs()  # the sync the page asked for
    assert state(appointment_id, payment_id)[0] == "booked"
    assert "You're booked" in world.page(payment_id).get_data(as_text=True)


def test_page_of_a_cancelled_paid_booking_says_what_is_refunded(world):
    booking, payment = _stripe_paid_booking(world, 2)
    cancellation.cancel_appointment(db.session, booking.id, now=world.clock.now)
    db.session.commit()
    html = world.client.get(f"/pay/{payment.token}").get_data(as_text=True)
    assert "This booking was cancelled. £10 of your payment is being refunded." in html


@pytest.mark.parametrize("token", ["abc%00def", "short", "x" * 65, "../../etc"])
def test_malformed_tokens_are_404(world, token):
    assert world.client.get(f"/pay/{token}").status_code == 404


def test_staff_cancelling_a_held_slot_tells_the_winner_and_closes_the_intent(world):
    appointment_id, payment_id = world.win()
    world.page(payment_id)
    intent_id = world.intent_of(payment_id)
    cancellation.cancel_appointment(
        db.session, appointment_id, reason="shop closed", now=world.clock.now
    )
    db.session.commit()
    world.run_jobs()
    assert state(appointment_id, payment_id)[:3] == ("cancelled", "open", "declined")
    assert "was cancelled. No payment is due." in world.texts_to(world.s.customers[0])[-1]
    assert world.customer.intent(intent_id).status == "canceled"
