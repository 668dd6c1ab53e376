"""The customer's manage page (``/b/<token>``): what it shows, the two-step cancel, its
refusals, bad links and its headers. Real PostgreSQL; effects are recorded, and the
app's clock is the test's (Monday 12 January 2026, 09:00 in London).

A known booking's link always answers 200 (cancelled or past, it says so and why); an
unknown or malformed token answers a plain 404 page.
"""

from __future__ import annotations

import html as html_lib
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from recovery.booking import manage
from recovery.effects import EffectKind
from recovery.models import Appointment, Payment, PaymentStatus, Refund, SlotOpening
from tests import factories as f
from tests.admin_support import CSRF_RE, forget_cached_request_state
from tests.scenario import scene

PRIVATE = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "X-Robots-Tag": "noindex, nofollow",
}


@pytest.fixture
def world(session, clock, recorder):
    """A paid (£20) booking on Wednesday 14 January at 09:00, two days ahead."""
    s = scene(session, clock.now, contact_phone="+442071234567")
    s.booking.starts_at = clock.now + timedelta(days=2)
    s.booking.ends_at = s.booking.starts_at + timedelta(minutes=30)
    session.commit()
    return s


def text(response) -> str:
    return html_lib.unescape(response.get_data(as_text=True))


def url(appt: Appointment, tail: str = "") -> str:
    return f"/b/{appt.manage_token}{tail}"


def csrf(client, appt: Appointment) -> str:
    forget_cached_request_state()  # the session fixture's app context outlives requests
    match = CSRF_RE.search(client.get(url(appt)).get_data(as_text=True))
    assert match, "no CSRF token on the manage page"
    return match.group(1)


def ask(client, appt: Appointment):
    """The first POST: the confirmation step."""
    return client.post(url(appt, "/cancel"), data={"csrf_token": csrf(client, appt)})


def confirm(client, appt: Appointment, refund: int | str | None = None, token: str | None = None):
    """The final POST, as the confirmation step's form sends it."""
    data = {"csrf_token": token or csrf(client, appt), "confirm": "yes"}
    if refund is not None:
        data["refund"] = str(refund)
    return client.post(url(appt, "/cancel"), data=data)


def counts(session, appt: Appointment) -> tuple[str, int, int]:
    session.expire_all()
    openings = session.scalar(
        select(func.count())
        .select_from(SlotOpening)
        .where(SlotOpening.source_appointment_id == appt.id)
    )
    refunds = session.scalar(
        select(func.count())
        .select_from(Refund)
        .join(Payment)
        .where(Payment.appointment_id == appt.id)
    )
    return session.get(Appointment, appt.id).status, openings, refunds


# ---------------------------------------------------------------- what the page shows


def test_page_shows_the_booking_and_a_full_refund_far_ahead(client, world):
    response = client.get(url(world.booking))
    assert response.status_code == 200
    page = text(response)
    assert world.shop.name in page and world.service.name in page
    assert "Wednesday 14 January, 09:00" in page  # London time
    assert '<dd id="paid">£20</dd>' in page
    assert 'If you cancel now, you get <strong id="refund-amount">£20</strong> back.' in page
    assert "full refund until Tuesday 13 January, 09:00; after that, 50% of your deposit" in page
    assert 'id="cancel"' in page and 'name="csrf_token"' in page


def test_page_shows_the_late_refund_inside_full_refund_hours(client, session, clock, world):
    world.shop.late_refund_percent = 35
    world.booking.starts_at = clock.now + timedelta(hours=5)
    world.booking.ends_at = world.booking.starts_at + timedelta(minutes=30)
    session.commit()
    page = text(client.get(url(world.booking)))
    assert "Monday 12 January, 14:00" in page
    assert '<strong id="refund-amount">£7</strong>' in page  # 35 % of £20
    assert "full refund until" not in page


def test_time_and_money_follow_the_shops_zone_and_currency(client, session, clock):
    shop = f.shop(session, timezone="America/New_York", currency="USD", locale="en_US")
    booking = f.appointment(
        session,
        f.resource(session, shop),
        f.customer(session, shop),
        f.service(session, shop),
        starts_at=clock.now + timedelta(days=3),
    )
    f.payment(session, booking, amount_minor=1250, currency="USD")
    session.commit()
    page = text(client.get(url(booking)))
    assert "Thursday 15 January, 04:00" in page  # 09:00 UTC is 04:00 in New York
    assert '<dd id="paid">$12.50</dd>' in page and "$12.50</strong> back" in page


def test_get_changes_nothing(client, session, recorder, world):
    for _ in range(3):
        assert client.get(url(world.booking)).status_code == 200
        assert client.head(url(world.booking)).status_code == 200
    assert client.get(url(world.booking, "/cancel")).status_code == 303
    assert counts(session, world.booking) == ("booked", 0, 0)
    assert recorder.effects == []


def test_an_unpaid_booking_links_to_its_deposit_and_may_be_cancelled(client, session, clock):
    s = scene(session, clock.now)
    pending = f.appointment(
        session,
        s.chair,
        s.owner,
        s.service,
        starts_at=clock.now + timedelta(days=3),
        status="pending_payment",
        payment_due_at=clock.now + timedelta(hours=24),
    )
    deposit = f.payment(session, pending, status=PaymentStatus.PENDING, provider_ref=None)
    session.commit()
    page = text(client.get(url(pending)))
    assert '<dd id="paid">Nothing paid</dd>' in page
    assert f'href="/pay/{deposit.token}"' in page
    assert "Nothing has been paid, so there is nothing to refund" in page

    assert confirm(client, pending).status_code == 303
    assert counts(session, pending) == ("cancelled", 0, 0)
    assert session.get(Payment, deposit.id).status == PaymentStatus.CANCELED  # can't pay now
    assert "This booking is cancelled." in text(client.get(url(pending)))


# ---------------------------------------------------------------- cancelling


def test_cancel_needs_a_csrf_token(client, session, recorder, world):
    csrf(client, world.booking)  # the session has a token; the form does not send it
    for data in ({}, {"confirm": "yes"}, {"confirm": "yes", "csrf_token": "forged"}):
        response = client.post(url(world.booking, "/cancel"), data=data)
        assert response.status_code == 400
        assert "Nothing has changed." in text(response)
        assert response.headers["Cache-Control"] == "no-store"
    assert counts(session, world.booking) == ("booked", 0, 0)
    assert recorder.effects == []


def test_a_token_from_another_browser_session_is_refused(app, client, session, world):
    token = csrf(client, world.booking)
    other = app.test_client()  # no session cookie: a forged cross-site POST looks like this
    forget_cached_request_state()
    assert confirm(other, world.booking, token=token).status_code == 400
    assert counts(session, world.booking) == ("booked", 0, 0)


def test_two_steps_cancel_refund_by_policy_and_open_one_slot(client, session, recorder, world):
    asked = ask(client, world.booking)
    assert asked.status_code == 200
    page = text(asked)
    assert "Cancel your booking on Wednesday 14 January, 09:00?" in page
    assert 'You will get <strong id="refund-amount">£20</strong> back.' in page
    assert 'name="confirm" value="yes"' in page and 'name="refund" value="2000"' in page
    assert counts(session, world.booking) == ("booked", 0, 0)  # asking changes nothing
    assert recorder.effects == []

    done = confirm(client, world.booking, refund=2000)
    assert done.status_code == 303
    assert done.headers["Location"].endswith(url(world.booking))
    assert counts(session, world.booking) == ("cancelled", 1, 1)
    booking = session.get(Appointment, world.booking.id)
    assert booking.cancellation_reason == manage.CUSTOMER_REASON
    [refund] = session.scalars(select(Refund)).all()
    assert refund.amount_minor == 2000 and refund.reason == "booking cancelled"
    opening = session.scalar(select(SlotOpening))
    assert recorder.of_kind(EffectKind.OFFER_NEXT)[0].args == (opening.id,)
    assert [e.args for e in recorder.of_kind(EffectKind.REFUND)] == [(refund.id,)]

    page = text(client.get(url(world.booking)))
    assert 'This booking is cancelled. A refund of <strong id="refunded">£20</strong>' in page
    assert 'id="cancel"' not in page


def test_a_late_cancel_refunds_the_late_percent(client, session, clock, world):
    clock.advance(hours=36)  # 12 hours before the start: inside full_refund_hours (24)
    assert "£10</strong> back" in text(ask(client, world.booking))
    assert confirm(client, world.booking, refund=1000).status_code == 303
    session.expire_all()
    assert [r.amount_minor for r in session.scalars(select(Refund))] == [1000]
    assert 'A refund of <strong id="refunded">£10</strong>' in text(client.get(url(world.booking)))


def test_repeated_final_posts_cancel_once(client, session, recorder, world):
    token = csrf(client, world.booking)
    for _ in range(4):
        assert confirm(client, world.booking, refund=2000, token=token).status_code == 303
    assert counts(session, world.booking) == ("cancelled", 1, 1)
    assert len(recorder.of_kind(EffectKind.OFFER_NEXT)) == 1
    assert len(recorder.of_kind(EffectKind.REFUND)) == 1
    # The first step after cancelling just shows the cancelled page.
    response = client.post(url(world.booking, "/cancel"), data={"csrf_token": token})
    assert response.status_code == 303
    assert counts(session, world.booking) == ("cancelled", 1, 1)


def test_a_changed_refund_is_asked_again_not_taken(client, session, clock, world):
    clock.advance(hours=23, minutes=59)  # shown £20 one minute before the full refund ends
    token = csrf(client, world.booking)
    assert "£20</strong> back" in text(ask(client, world.booking))
    clock.advance(minutes=2)
    response = confirm(client, world.booking, refund=2000, token=token)
    assert response.status_code == 409
    page = text(response)
    assert "The refund has changed" in page and "£10</strong> back" in page
    assert 'name="refund" value="1000"' in page
    assert counts(session, world.booking) == ("booked", 0, 0)
    assert confirm(client, world.booking, refund=1000, token=token).status_code == 303
    assert counts(session, world.booking) == ("cancelled", 1, 1)


def test_cancel_works_over_https_without_a_referrer(client, session, world):
    """The page sends no referrer; Flask-WTF's app-wide check would refuse such a POST
    over HTTPS ("The referrer header is missing"), so the form checks its token itself."""
    forget_cached_request_state()
    page = client.get(url(world.booking), base_url="https://localhost").get_data(as_text=True)
    token = CSRF_RE.search(page).group(1)
    response = client.post(
        url(world.booking, "/cancel"),
        data={"csrf_token": token, "confirm": "yes"},
        base_url="https://localhost",
    )
    assert response.status_code == 303
    assert counts(session, world.booking) == ("cancelled", 1, 1)


# ---------------------------------------------------------------- refusals


def test_refused_after_the_start_with_the_reason(client, session, clock, recorder, world):
    token = csrf(client, world.booking)  # the page was opened before the start
    clock.advance(days=2, minutes=5)
    page = text(client.get(url(world.booking)))
    assert "This booking has already started, so it can no longer be cancelled here" in page
    assert f"please call {world.shop.name} on +442071234567" in page
    assert 'id="cancel"' not in page
    for data in ({"csrf_token": token}, {"csrf_token": token, "confirm": "yes"}):
        response = client.post(url(world.booking, "/cancel"), data=data)
        assert response.status_code == 409
        assert "already started" in text(response)
    assert counts(session, world.booking) == ("booked", 0, 0)
    assert recorder.effects == []


def test_refused_inside_the_shops_no_self_cancel_window(client, session, clock, world):
    token = csrf(client, world.booking)  # the page was opened before the shop's change
    world.shop.self_cancel_cutoff_hours = 49  # the booking starts in 48 hours
    session.commit()
    assert 'id="cancel"' not in text(client.get(url(world.booking)))
    response = confirm(client, world.booking, refund=2000, token=token)
    assert response.status_code == 409
    assert (
        f"{world.shop.name} does not take cancellations online within 49 hours of the start"
        in text(response)
    )
    assert counts(session, world.booking) == ("booked", 0, 0)
    with pytest.raises(manage.SelfCancelRefused):
        manage.cancel_by_customer(session, world.booking.manage_token, clock.now)

    world.shop.self_cancel_cutoff_hours = 48  # exactly N hours ahead is still allowed
    session.commit()
    assert 'id="cancel"' in text(client.get(url(world.booking)))
    assert confirm(client, world.booking, token=token).status_code == 303
    assert counts(session, world.booking) == ("cancelled", 1, 1)


def test_staff_cancellation_meanwhile_leaves_one_outcome(client, session, clock, world):
    from recovery.booking.cancellation import cancel_appointment

    token = csrf(client, world.booking)
    cancel_appointment(session, world.booking.id, reason="staff", now=clock.now)
    session.commit()
    assert confirm(client, world.booking, refund=2000, token=token).status_code == 303
    assert counts(session, world.booking) == ("cancelled", 1, 1)
    assert session.get(Appointment, world.booking.id).cancellation_reason == "staff"


# ---------------------------------------------------------------- links no longer valid


@pytest.mark.parametrize(
    "path",
    [
        "/b/" + "A" * 22,  # well formed, unknown
        "/b/short",
        "/b/" + "x" * 65,
        "/b/" + "x" * 5000,
        "/b/abc%00defghijklmnopqrstu",
        "/b/%00",
        "/b/abcdefghijklmnop%2Fqrstuv",
        "/b/abcdefghijklmnopqrstuv/extra",
        "/b/%E2%98%83%E2%98%83%E2%98%83%E2%98%83%E2%98%83%E2%98%83%E2%98%83%E2%98%83",
        "/b/'%20OR%201=1--aaaaaaaaaa",
    ],
)
def test_unknown_and_malformed_tokens_get_a_plain_404(client, session, path):
    for response in (
        client.get(path),
        client.post(path + "/cancel", data={"confirm": "yes"}),
        client.get(path + "/cancel"),
    ):
        assert response.status_code == 404, path
        assert "This link is not valid" in text(response)
        for name, value in PRIVATE.items():
            assert response.headers[name] == value


def test_a_cancelled_booking_says_so_plainly(client, session, clock, world):
    token = csrf(client, world.booking)
    world.booking.status = "cancelled"
    world.booking.cancelled_at = clock.now
    session.commit()
    response = client.get(url(world.booking))
    assert response.status_code == 200
    page = text(response)
    assert "This booking is cancelled." in page and 'id="cancel"' not in page
    assert confirm(client, world.booking, token=token).status_code == 303  # back to the page
    assert counts(session, world.booking) == ("cancelled", 0, 0)


def test_a_past_booking_says_so_plainly(client, session, clock, world):
    clock.advance(days=3)
    response = client.get(url(world.booking))
    assert response.status_code == 200
    assert "already started" in text(response) and 'id="cancel"' not in text(response)
    world.booking.status = "completed"
    session.commit()
    assert "already started" in text(client.get(url(world.booking)))


# ---------------------------------------------------------------- headers


def test_every_manage_response_is_private_and_unframeable(client, world):
    token = csrf(client, world.booking)
    responses = [
        client.get(url(world.booking)),
        client.post(url(world.booking, "/cancel"), data={"csrf_token": token}),
        client.post(url(world.booking, "/cancel"), data={}),
        client.get(url(world.booking, "/cancel")),
        client.get("/b/not-a-token"),
        client.post(url(world.booking, "/cancel"), data={"csrf_token": token, "confirm": "yes"}),
        client.get(url(world.booking)),
    ]
    assert [r.status_code for r in responses] == [200, 200, 400, 303, 404, 303, 200]
    for response in responses:
        for name, value in PRIVATE.items():
            assert response.headers[name] == value
        policy = response.headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in policy and "default-src 'none'" in policy
        assert "script-src" not in policy
    page = text(responses[0])
    assert "<script" not in page and "src=" not in page and 'href="http' not in page


def test_the_pay_page_shares_the_private_headers(client, session, clock):
    s = scene(session, clock.now)
    held = f.appointment(
        session,
        s.chair,
        s.owner,
        s.service,
        starts_at=clock.now + timedelta(days=3),
        status="pending_payment",
        payment_due_at=clock.now + timedelta(hours=1),
    )
    deposit = f.payment(session, held, status=PaymentStatus.PENDING, provider_ref=None)
    session.commit()
    for response in (client.get(f"/pay/{deposit.token}"), client.get("/pay/not-a-real-token")):
        for name, value in PRIVATE.items():
            assert response.headers[name] == value
        policy = response.headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in policy and "https://js.stripe.com" in policy
