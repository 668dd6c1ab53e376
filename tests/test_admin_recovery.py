"""Steering recovery from the admin panel: cancel, watch the offers, reply, pay, re-trigger.

Every action goes through the real domain functions; effects are recorded and run in time
order by the ``driver`` (the real job functions), as a worker would.
"""

from __future__ import annotations

import re

import pytest

from recovery.models import (
    Appointment,
    Message,
    OfferStatus,
    OpeningStatus,
    Payment,
    SlotOffer,
    SlotOpening,
)
from tests import factories as f
from tests.admin_support import PASSWORD, act, login, post
from tests.scenario import scene


@pytest.fixture
def world(session, driver):
    s = scene(session, driver.clock.now)
    s.staff = f.staff(session, s.shop, password=PASSWORD)
    session.commit()
    return s


@pytest.fixture
def staff(app, world):
    client = app.test_client()
    assert login(client, world.staff.email).status_code == 302
    return client


def text(response) -> str:
    return response.get_data(as_text=True)


def cancel_and_offer(staff, session, driver, world) -> SlotOpening:
    response = act(staff, "appointments", "cancel", world.booking.id, follow_redirects=True)
    assert response.status_code == 200
    assert "slot opening #" in text(response)
    driver.run_due()
    session.expire_all()
    return session.query(SlotOpening).filter_by(source_appointment_id=world.booking.id).one()


def offers_of(session, opening) -> list[SlotOffer]:
    query = session.query(SlotOffer).filter_by(slot_opening_id=opening.id)
    return query.order_by(SlotOffer.id).all()


def simulate(staff, phone: str, body: str):
    return post(
        staff, "/admin/sandbox/", {"from_number": phone, "body": body}, follow_redirects=True
    )


def test_the_whole_recovery_from_the_panel(staff, session, driver, world):
    opening = cancel_and_offer(staff, session, driver, world)
    first = world.customers[0]
    [offer] = offers_of(session, opening)
    assert offer.customer_id == first.id and offer.status == OfferStatus.SENT

    listing = text(staff.get("/admin/openings/"))
    assert 'data-status="open"' in listing
    assert world.chair.name in listing and world.service.name in listing
    # 09:00 UTC tomorrow is 09:00 in London (GMT in January).
    assert "Tue 13 Jan 2026, 09:00" in listing

    page = text(staff.get(f"/admin/openings/details/?id={opening.id}"))
    assert first.name in page
    assert "A slot opened tomorrow at 09:00" in page  # the offer SMS, in the timeline
    assert f"→ {first.phone}" in page

    replied = simulate(staff, first.phone, "yes")
    assert "Reply sent to" in text(replied)
    session.expire_all()
    held = session.query(Appointment).filter_by(source_slot_opening_id=opening.id).one()
    assert held.status == "pending_payment"
    inbound = session.query(Message).filter_by(direction="inbound").one()
    assert inbound.provider_sid.startswith("SMsim") and inbound.customer_id == first.id

    payment = session.query(Payment).filter_by(appointment_id=held.id).one()
    sandbox = text(staff.get("/admin/sandbox/"))
    assert f'name="rowid" value="{payment.id}"' in sandbox
    paid = act(staff, "payments", "mark_succeeded", payment.id, follow_redirects=True)
    assert "marked succeeded: booked" in text(paid)
    driver.run_due()

    session.expire_all()
    assert session.get(Appointment, held.id).status == "booked"
    page = text(staff.get(f"/admin/openings/details/?id={opening.id}"))
    assert 'data-status="filled"' in page
    assert f"/admin/appointments/details/?id={held.id}" in page
    listing = text(staff.get("/admin/openings/"))
    assert f"/admin/appointments/details/?id={held.id}" in listing


def test_retrigger_cuts_the_live_offer_short_and_offers_the_next(staff, session, driver, world):
    opening = cancel_and_offer(staff, session, driver, world)
    response = act(staff, "openings", "retrigger", opening.id, follow_redirects=True)
    assert "expired; next: offered" in text(response)
    driver.run_due()
    session.expire_all()
    first, second = offers_of(session, opening)
    assert first.status == OfferStatus.EXPIRED and first.expires_at == driver.clock.now
    assert second.customer_id == world.customers[1].id and second.status == OfferStatus.SENT


def test_retrigger_offers_when_nobody_holds_an_offer(staff, session, driver, world):
    act(staff, "appointments", "cancel", world.booking.id)  # the offer job has not run yet
    opening = session.query(SlotOpening).one()
    response = act(staff, "openings", "retrigger", opening.id, follow_redirects=True)
    assert f"Opening #{opening.id}: offered." in text(response)
    driver.run_due()  # the queued offer job finds an offer live and does nothing
    session.expire_all()
    assert [o.status for o in offers_of(session, opening)] == ["sent"]


def test_expire_ends_the_opening_and_its_offer(staff, session, driver, world):
    opening = cancel_and_offer(staff, session, driver, world)
    response = act(staff, "openings", "expire", opening.id, follow_redirects=True)
    assert f"Opening #{opening.id} expired." in text(response)
    session.expire_all()
    assert session.get(SlotOpening, opening.id).status == OpeningStatus.EXPIRED
    assert [o.status for o in offers_of(session, opening)] == ["expired"]
    # A second click changes nothing and says so.
    again = act(staff, "openings", "expire", opening.id, follow_redirects=True)
    assert "left as it is" in text(again)


def test_expire_an_offer_now_offers_the_next_customer(staff, session, driver, world):
    opening = cancel_and_offer(staff, session, driver, world)
    [offer] = offers_of(session, opening)
    response = act(staff, "offers", "expire", offer.id, follow_redirects=True)
    assert f"Offer #{offer.id}: expired; next: offered." in text(response)
    # The exact-time expiry job, when it runs later, finds nothing to do.
    driver.clock.advance(minutes=16)
    driver.run_due()
    session.expire_all()
    first, second = offers_of(session, opening)[:2]
    assert first.status == OfferStatus.EXPIRED
    assert second.customer_id == world.customers[1].id


def test_marking_a_payment_failed_releases_the_slot_to_the_next(staff, session, driver, world):
    opening = cancel_and_offer(staff, session, driver, world)
    simulate(staff, world.customers[0].phone, "YES")
    session.expire_all()
    payment = (
        session.query(Payment)
        .join(Appointment)
        .filter(Appointment.source_slot_opening_id == opening.id)
        .one()
    )
    response = act(staff, "payments", "mark_failed", payment.id, follow_redirects=True)
    assert "marked failed: released" in text(response)
    driver.run_due()
    session.expire_all()
    assert session.get(SlotOpening, opening.id).status == OpeningStatus.OPEN
    assert offers_of(session, opening)[-1].customer_id == world.customers[1].id


def test_cancelling_an_unpaid_booking_says_why_no_slot_opened(staff, session, world):
    unpaid = f.appointment(session, world.chair, world.customers[0], world.service)
    session.commit()
    response = act(staff, "appointments", "cancel", unpaid.id, follow_redirects=True)
    assert "no slot opened: the booking was not paid" in text(response)
    # Cancelling twice is harmless: the first outcome is reported again.
    again = act(staff, "appointments", "cancel", unpaid.id, follow_redirects=True)
    assert "no slot opened" in text(again)
    assert session.query(SlotOpening).count() == 0


def test_appointment_page_has_cancel_and_refund(staff, session, world):
    page = text(staff.get(f"/admin/appointments/details/?id={world.booking.id}"))
    assert 'data-action="appointments-cancel"' in page
    assert f"/admin/appointments/refund/?id={world.booking.id}" in page


def test_refund_form_refunds_once_even_when_submitted_twice(staff, session, recorder, world):
    url = f"/admin/appointments/refund/?id={world.booking.id}"
    form = text(staff.get(url))
    key = re.search(r'name="form_token" type="hidden" value="([^"]+)"', form).group(1)
    payment = world.booking.payments[0]
    data = {
        "payment_id": payment.id,
        "amount": "5.00",
        "reason": "goodwill",
        "form_token": key,
    }
    first = post(staff, url, data, follow_redirects=True)
    assert "Refund of £5 requested" in text(first)
    second = post(staff, url, data, follow_redirects=True)
    assert second.status_code == 200
    session.expire_all()
    payment = session.get(Payment, payment.id)
    assert payment.refunded_minor == 500
    assert len(payment.refunds) == 1 and payment.refunds[0].requested_by_id == world.staff.id


def test_refund_above_what_is_left_is_refused_clearly(staff, session, world):
    url = f"/admin/appointments/refund/?id={world.booking.id}"
    payment = world.booking.payments[0]
    data = {
        "payment_id": payment.id,
        "amount": "25.00",
        "reason": "too much",
        "form_token": form_token(staff, world.booking),
    }
    response = post(staff, url, data)
    assert response.status_code == 422
    assert "At most £20 of this payment can still be refunded." in text(response)
    session.expire_all()
    assert session.get(Payment, payment.id).refunded_minor == 0


def form_token(client, booking) -> str:
    form = text(client.get(f"/admin/appointments/refund/?id={booking.id}"))
    return re.search(r'name="form_token" type="hidden" value="([^"]+)"', form).group(1)


def test_a_forged_refund_key_cannot_take_the_cancellations_refund(staff, session, driver, world):
    """A refund form posted with the key the cancellation's own refund will use
    (``cancel-<payment id>``), under any field name, is refused. The cancellation then
    refunds by policy, and its text says what was really refunded."""
    payment = world.booking.payments[0]
    url = f"/admin/appointments/refund/?id={world.booking.id}"
    forged_key = f"cancel-{payment.id}"
    forged = post(
        staff,
        url,
        {
            "payment_id": payment.id,
            "amount": "0.01",
            "reason": "claims the policy's key",
            "form_token": forged_key,
            "idempotency_key": forged_key,
        },
    )
    act(staff, "appointments", "cancel", world.booking.id)
    driver.run_due()
    session.expire_all()

    refunds = session.get(Payment, payment.id).refunds
    assert [(r.idempotency_key, r.amount_minor, r.status) for r in refunds] == [
        (forged_key, 2000, "succeeded")
    ]
    [told] = session.query(Message).filter_by(appointment_id=world.booking.id, purpose="refunded")
    assert "We're refunding £20 to you." in told.body
    assert forged.status_code == 422
    assert "This refund form has expired: check it and submit again." in text(forged)


def test_a_refund_form_key_works_only_for_its_booking(staff, session, world):
    """A key the server signed for one booking is refused on another's refund form."""
    other = f.appointment(
        session,
        world.chair,
        world.customers[0],
        world.service,
        starts_at=world.booking.ends_at,
        paid=True,
    )
    session.commit()
    payment = other.payments[0]
    data = {
        "payment_id": payment.id,
        "amount": "5.00",
        "reason": "goodwill",
        "form_token": form_token(staff, world.booking),
        "idempotency_key": "staff-chosen-by-the-browser",
    }
    response = post(staff, f"/admin/appointments/refund/?id={other.id}", data)
    assert response.status_code == 422
    session.expire_all()
    assert session.get(Payment, payment.id).refunds == []
    # The form shown again carries a key of its own, which works.
    data["form_token"] = re.search(
        r'name="form_token" type="hidden" value="([^"]+)"', text(response)
    ).group(1)
    assert post(staff, f"/admin/appointments/refund/?id={other.id}", data).status_code == 302
    session.expire_all()
    [refund] = session.get(Payment, payment.id).refunds
    assert refund.amount_minor == 500 and refund.idempotency_key.startswith("staff-")


def test_refund_action_opens_the_form(staff, world):
    response = act(staff, "appointments", "refund", world.booking.id)
    assert response.status_code == 302
    assert response.location.endswith(f"/admin/appointments/refund/?id={world.booking.id}")
