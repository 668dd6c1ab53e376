"""Deposit rules, the sandbox payment page, refund limits under concurrency, and repairs.

The Stripe flows themselves are in ``test_stripe_payments.py``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from recovery.booking import cancellation, holds
from recovery.db import db
from recovery.effects import EffectKind
from recovery.models import (
    DepositKind,
    OfferStatus,
    Payment,
    Refund,
    Service,
    SlotOffer,
    SlotOpening,
)
from recovery.offers import accepting, offering
from recovery.payments import refunds
from recovery.payments.money import deposit_minor, format_money
from recovery.sweep import sweep_batch
from tests import factories as f
from tests.scenario import scene
from tests.test_races import at_once


def service(kind: DepositKind, value: int, price: int = 4550) -> Service:
    return Service(
        name="Cut", duration_minutes=30, price_minor=price, deposit_kind=kind, deposit_value=value
    )


@pytest.mark.parametrize(
    ("kind", "value", "price", "deposit"),
    [
        (DepositKind.NONE, 0, 4550, 0),
        (DepositKind.FIXED, 1000, 4550, 1000),
        (DepositKind.FIXED, 9000, 4550, 4550),  # never more than the price
        (DepositKind.PERCENT, 20, 4550, 910),
        (DepositKind.PERCENT, 25, 4550, 1138),  # 1137.5 rounds half up
        (DepositKind.PERCENT, 100, 4550, 4550),
        (DepositKind.FULL, 0, 4550, 4550),
        (DepositKind.PERCENT, 30, 5000, 1500),  # JPY: the minor unit is the yen
    ],
)
def test_deposit_policy_in_integer_minor_units(kind, value, price, deposit):
    assert deposit_minor(service(kind, value, price)) == deposit


def test_money_is_shown_in_the_shops_currency():
    assert format_money(1138, "GBP", "en_GB") == "£11.38"
    assert format_money(1500, "JPY", "ja_JP") == "￥1,500"
    assert format_money(2000, "EUR", "de_DE") == "20\u00a0€"


@pytest.mark.parametrize("kind", [DepositKind.PERCENT, DepositKind.FULL])
def test_a_recovered_booking_asks_the_same_deposit_as_a_normal_one(session, clock, kind):
    s = scene(session, clock.now)
    s.service.deposit_kind, s.service.deposit_value = kind, 40
    cancellation.cancel_appointment(session, s.booking.id, now=clock.now)
    offering.offer_next(session, _opening_id(session), clock.now)
    offer = session.scalar(select(SlotOffer).where(SlotOffer.status == OfferStatus.SENT))
    won = accepting.accept_offer(session, offer.id, now=clock.now)
    assert won.payment.amount_minor == deposit_minor(s.service)
    assert won.payment.currency == s.shop.currency
    assert won.appointment.status == "pending_payment"


def _opening_id(session) -> int:
    return session.scalar(select(SlotOpening.id))


def test_sandbox_page_says_it_is_a_sandbox(session, clock, client, app):
    s = scene(session, clock.now)
    cancellation.cancel_appointment(session, s.booking.id, now=clock.now)
    offering.offer_next(session, _opening_id(session), clock.now)
    offer = session.scalar(select(SlotOffer).where(SlotOffer.status == OfferStatus.SENT))
    won = accepting.accept_offer(session, offer.id, now=clock.now)
    session.commit()
    html = client.get(f"/pay/{won.payment.token}").get_data(as_text=True)
    assert "Sandbox payment" in html and "no card is charged" in html
    assert "js.stripe.com" not in html
    assert won.payment.provider == "sandbox"


def test_stripe_webhook_without_a_configured_secret_refuses_everything(client):
    response = client.post(
        "/webhooks/stripe", data=b"{}", headers={"Stripe-Signature": "t=1,v1=00"}
    )
    assert response.status_code == 400


def test_concurrent_refunds_never_exceed_what_was_paid(app, committed):
    """Two staff refund £15 of a £20 deposit at the same moment: one is refused."""
    s = scene(committed, datetime.now(UTC))
    payment_id = s.booking.payments[0].id
    committed.commit()

    def refund(key):
        def call():
            with app.app_context():
                try:
                    refunds.request_refund(db.session, payment_id, 1500, "goodwill", key)
                    db.session.commit()
                    return "ok"
                except refunds.RefundError as exc:
                    db.session.rollback()
                    return str(exc)
                finally:
                    db.session.remove()

        return call

    for trial in range(10):
        results = at_once(refund(f"a-{trial}"), refund(f"b-{trial}"))
        committed.expire_all()
        payment = committed.get(Payment, payment_id)
        assert payment.refunded_minor <= payment.amount_minor
        if trial == 0:
            assert sorted(results)[1] == "ok" and "at most £5" in sorted(results)[0]
        else:
            assert all("at most £5" in r for r in results)
    refunds_made = committed.scalars(select(Refund).where(Refund.payment_id == payment_id)).all()
    assert [r.amount_minor for r in refunds_made] == [1500]


def test_a_refund_key_names_one_refund_never_another(session, clock):
    """A key already used for another amount is an error, never taken as the refund done:
    otherwise the cancellation's text would promise money that was never refunded."""
    s = scene(session, clock.now)
    payment = s.booking.payments[0]
    staff = f.staff(session, s.shop)
    with pytest.raises(refunds.RefundError, match="needs a key made for a staff refund"):
        refunds.request_refund(
            session, payment.id, 1, "x", f"cancel-{payment.id}", staff_id=staff.id
        )
    # However it got there, a 1p refund holding the cancellation's key.
    refunds.request_refund(session, payment.id, 1, "x", f"cancel-{payment.id}", now=clock.now)
    with pytest.raises(refunds.RefundError, match=r"already used for refund #\d+ \(£0.01"):
        refunds.refund_cancelled_booking(session, s.booking, clock.now)
    # The same key for the same payment and amount is the same refund (a retry).
    again = refunds.request_refund(session, payment.id, 1, "x", f"cancel-{payment.id}")
    assert [r.id for r in session.get(Payment, payment.id).refunds] == [again.id]


def test_sweep_repairs_lost_refund_and_cancellation_jobs(session, clock, recorder):
    s = scene(session, clock.now)
    payment = s.booking.payments[0]
    refund = refunds.request_refund(session, payment.id, 500, "goodwill", "k1", now=clock.now)
    released = f.payment(
        session,
        s.booking,
        provider="stripe",
        provider_ref="pi_owed",
        status="canceled",
        updated_at=clock.now,
    )
    session.flush()
    recorder.clear()

    report = sweep_batch(session, clock.now + timedelta(seconds=10))
    assert report.requeued_payment_work == 0  # too soon: their jobs may still be running
    report = sweep_batch(session, clock.now + timedelta(minutes=2))
    assert report.requeued_payment_work == 2
    session.commit()
    assert (refund.id,) in [e.args for e in recorder.of_kind(EffectKind.REFUND)]
    assert (released.id,) in [e.args for e in recorder.of_kind(EffectKind.CANCEL_PAYMENT)]


def test_cancelling_an_unpaid_booking_closes_its_payment_request(session, clock):
    s = scene(session, clock.now)
    unpaid = f.appointment(
        session,
        s.chair,
        s.owner,
        s.service,
        starts_at=clock.now + timedelta(days=3),
        status="pending_payment",
    )
    request = f.payment(session, unpaid, status="pending")
    result = cancellation.cancel_appointment(session, unpaid.id, now=clock.now)
    assert result.opening is None and "not paid" in result.note
    assert request.status == "canceled" and request.provider_closed_at == clock.now
    assert request.refunds == []


def test_staff_cancel_racing_a_payment_never_deadlocks_and_keeps_the_money_right(
    app, committed, redis_conn, recorder
):
    """Cancel and confirm take the same rows in the same order (opening, booking, payment):
    whichever wins, the booking ends cancelled and the money paid is refunded."""
    trials = 8
    for trial in range(trials):
        now = datetime.now(UTC)
        s = scene(committed, now, n_customers=1, name=f"Race {trial}")
        cancellation.cancel_appointment(committed, s.booking.id, now=now)
        offering.offer_next(committed, _opening_id_of(committed, s.booking.id), now)
        offer = committed.scalar(
            select(SlotOffer).where(
                SlotOffer.status == OfferStatus.SENT, SlotOffer.customer_id == s.customers[0].id
            )
        )
        won = accepting.accept_offer(committed, offer.id, now=now)
        committed.commit()
        appointment_id, payment_id = won.appointment.id, won.payment.id

        def cancel(appointment_id=appointment_id):
            with app.app_context():
                cancellation.cancel_appointment(db.session, appointment_id, reason="staff")
                db.session.commit()
                db.session.remove()

        def confirm(payment_id=payment_id):
            with app.app_context():
                holds.confirm_payment(db.session, payment_id)
                db.session.commit()
                db.session.remove()

        at_once(cancel, confirm)  # a deadlock would surface here as an error
        committed.expire_all()
        payment = committed.get(Payment, payment_id)
        assert committed.get(type(won.appointment), appointment_id).status == "cancelled"
        assert payment.status == "succeeded"
        assert payment.refunded_minor > 0, "money kept for a cancelled booking"


def _opening_id_of(session, appointment_id: int) -> int:
    return session.scalar(
        select(SlotOpening.id).where(SlotOpening.source_appointment_id == appointment_id)
    )
