"""Each invariant the database can express really refuses the bad row on PostgreSQL."""

from datetime import timedelta

import pytest
from sqlalchemy.exc import IntegrityError

from recovery.models import Message, Payment, ProviderEvent
from tests import factories as f


@pytest.fixture
def world(session):
    shop = f.shop(session)
    chair = f.resource(session, shop)
    service = f.service(session, shop)
    alice = f.customer(session, shop)
    bob = f.customer(session, shop)
    return shop, chair, service, alice, bob


def refused(session, make, constraint: str):
    with pytest.raises(IntegrityError) as err, session.begin_nested():
        make()
        session.flush()
    assert constraint in str(err.value)


def test_overlapping_active_appointments_refused(session, world):
    _, chair, service, alice, bob = world
    first = f.appointment(session, chair, alice, service)
    refused(
        session,
        lambda: f.appointment(
            session, chair, bob, service, starts_at=first.starts_at + timedelta(minutes=10)
        ),
        "ex_appointments_no_overlap",
    )


def test_back_to_back_and_cancelled_do_not_overlap(session, world):
    _, chair, service, alice, bob = world
    first = f.appointment(session, chair, alice, service)
    f.appointment(session, chair, bob, service, starts_at=first.ends_at)  # touching is fine
    first.status = "cancelled"
    session.flush()
    f.appointment(session, chair, bob, service, starts_at=first.starts_at)  # slot is free again


def test_other_resource_may_overlap(session, world):
    shop, chair, service, alice, bob = world
    other = f.resource(session, shop)
    first = f.appointment(session, chair, alice, service)
    f.appointment(session, other, bob, service, starts_at=first.starts_at)


def test_one_live_offer_per_opening(session, world):
    _, chair, service, alice, bob = world
    opening = f.opening(session, f.appointment(session, chair, alice, service, status="cancelled"))
    f.offer(session, opening, alice)
    refused(session, lambda: f.offer(session, opening, bob), "uq_slot_offers_live_per_opening")


def test_one_live_offer_per_customer(session, world):
    shop, chair, service, alice, bob = world
    other = f.resource(session, shop)
    first = f.opening(session, f.appointment(session, chair, bob, service, status="cancelled"))
    second = f.opening(session, f.appointment(session, other, bob, service, status="cancelled"))
    f.offer(session, first, alice)
    refused(session, lambda: f.offer(session, second, alice), "uq_slot_offers_live_per_customer")


def test_finished_offers_do_not_block_a_new_live_one(session, world):
    _, chair, service, alice, bob = world
    opening = f.opening(session, f.appointment(session, chair, alice, service, status="cancelled"))
    f.offer(session, opening, alice, status="expired")
    f.offer(session, opening, bob)


def test_one_offer_per_opening_and_customer(session, world):
    _, chair, service, alice, _ = world
    opening = f.opening(session, f.appointment(session, chair, alice, service, status="cancelled"))
    f.offer(session, opening, alice, status="declined")
    refused(
        session,
        lambda: f.offer(session, opening, alice, status="expired"),
        "uq_slot_offers_slot_opening_id",
    )


def test_one_live_opening_per_resource_and_start(session, world):
    _, chair, service, alice, bob = world
    a = f.appointment(session, chair, alice, service, status="cancelled")
    b = f.appointment(session, chair, bob, service, starts_at=a.starts_at, status="cancelled")
    f.opening(session, a)
    refused(session, lambda: f.opening(session, b), "uq_slot_openings_live_resource_start")


def test_expired_opening_does_not_block_a_new_one(session, world):
    _, chair, service, alice, bob = world
    a = f.appointment(session, chair, alice, service, status="cancelled")
    b = f.appointment(session, chair, bob, service, starts_at=a.starts_at, status="cancelled")
    f.opening(session, a, status="expired")
    f.opening(session, b)


def test_one_opening_per_source_appointment(session, world):
    _, chair, service, alice, _ = world
    a = f.appointment(session, chair, alice, service, status="cancelled")
    f.opening(session, a, status="expired")
    refused(session, lambda: f.opening(session, a), "uq_slot_openings_source_appointment_id")


def test_customer_phone_unique_per_shop(session, world):
    shop, *_ = world
    f.customer(session, shop, phone="+447911000111")
    refused(
        session,
        lambda: f.customer(session, shop, phone="+447911000111"),
        "uq_customers_shop_id_phone",
    )
    f.customer(session, f.shop(session), phone="+447911000111")  # another shop may


def test_message_sid_unique(session, world):
    def message():
        session.add(
            Message(
                direction="inbound",
                from_number="+1",
                to_number="+2",
                body="x",
                purpose="reply",
                provider_sid="SM123",
                status="received",
            )
        )

    message()
    session.flush()
    refused(session, message, "uq_messages_provider_sid")


def test_payment_provider_reference_unique(session, world):
    _, chair, service, alice, _ = world
    appt = f.appointment(session, chair, alice, service)
    f.payment(session, appt, provider_ref="pi_1")
    refused(
        session,
        lambda: session.add(
            Payment(
                appointment_id=appt.id,
                provider="sandbox",
                provider_ref="pi_1",
                amount_minor=1,
                currency="GBP",
            )
        ),
        "uq_payments_provider_provider_ref",
    )


def test_provider_event_unique(session):
    session.add(ProviderEvent(provider="stripe", event_id="evt_1"))
    session.flush()
    refused(
        session,
        lambda: session.add(ProviderEvent(provider="stripe", event_id="evt_1")),
        "uq_provider_events_provider_event_id",
    )


def test_refund_never_exceeds_amount(session, world):
    _, chair, service, alice, _ = world
    appt = f.appointment(session, chair, alice, service)
    refused(
        session,
        lambda: f.payment(session, appt, amount_minor=2000, refunded_minor=2001),
        "ck_payments_refund_within_amount",
    )


def test_unknown_status_refused(session, world):
    _, chair, service, alice, _ = world
    refused(
        session,
        lambda: f.appointment(session, chair, alice, service, status="maybe"),
        "ck_appointments_status_valid",
    )


def test_rows_do_not_leak_between_tests(session):
    from sqlalchemy import func, select

    from recovery.models import Shop

    assert session.scalar(select(func.count()).select_from(Shop)) == 0
