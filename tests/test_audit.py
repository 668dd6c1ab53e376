"""The audit trail: every staff action that moves money or steers recovery leaves exactly
one row, in the action's own transaction; the owner reads it, scoped to their shop; and
nothing the app holds (views, its session, its engine) can change or remove a row."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import delete, select, text, update
from sqlalchemy.exc import DBAPIError

from recovery import audit
from recovery.audit import AuditAction
from recovery.db import db
from recovery.models import (
    Appointment,
    AppointmentStatus,
    AuditEvent,
    Payment,
    Shop,
    SlotOffer,
    SlotOpening,
)
from tests import factories as f
from tests.admin_support import *  # noqa: F403 (the shared fixtures)
from tests.admin_support import (
    PASSWORD,
    act,
    forget_cached_request_state,
    login,
    post,
    settings_form,
)


def page(response) -> str:
    return response.get_data(as_text=True)


def get(client, url: str, **kw):
    """GET as this client's staff member (the tests share one app context, where
    Flask-Login caches whoever made the last request)."""
    forget_cached_request_state()
    return client.get(url, **kw)


def events(session, shop=None) -> list[AuditEvent]:
    session.expire_all()
    query = select(AuditEvent).order_by(AuditEvent.id)
    if shop is not None:
        query = query.where(AuditEvent.shop_id == shop.id)
    return list(session.scalars(query))


def the_event(session, world, who, action, target) -> AuditEvent:
    """The one row there is, checked for who, which shop, what and on which row."""
    [event] = events(session)
    assert event.shop_id == world.shop.id
    assert (event.staff_id, event.staff_email) == (who.id, who.email)
    assert event.action == action
    assert (event.target_type, event.target_id) == (type(target).__tablename__, target.id)
    return event


def iso(value) -> str:
    return value.isoformat()


# ---------------------------------------------------------------- each action, one row


def test_cancel_records_the_status_and_the_refund(owner_client, session, shop_a):
    booking = shop_a.booking
    act(owner_client, "appointments", "cancel", booking.id)
    event = the_event(session, shop_a, shop_a.owner, "cancel", booking)
    refunded = session.get(Payment, shop_a.payment.id).refunded_minor
    assert refunded == 2000  # a day ahead: refunded in full by the shop's policy
    assert event.before == {"status": "booked", "refunded_minor": 0}
    assert event.after == {"status": "cancelled", "refunded_minor": refunded}
    assert event.note == session.get(Appointment, booking.id).recovery_note
    # A second click changes nothing and records nothing.
    act(owner_client, "appointments", "cancel", booking.id)
    assert len(events(session)) == 1


def test_a_refused_cancel_records_nothing(owner_client, session, shop_a):
    done = f.appointment(
        session,
        shop_a.chair,
        shop_a.customers[0],
        shop_a.service,
        starts_at=shop_a.booking.starts_at - timedelta(days=3),
        status=AppointmentStatus.COMPLETED,
    )
    session.commit()
    response = act(owner_client, "appointments", "cancel", done.id, follow_redirects=True)
    assert "not cancelled" in page(response)
    assert events(session) == []


@pytest.mark.parametrize(
    ("action", "audit_action", "status", "booking_status"),
    [
        ("mark_succeeded", "mark_paid", "succeeded", "booked"),
        ("mark_failed", "mark_failed", "failed", None),
    ],
)
def test_sandbox_payment_outcomes_are_recorded_once(
    clerk_client, session, shop_a, action, audit_action, status, booking_status
):
    pending = shop_a.pending
    act(clerk_client, "payments", action, pending.id)
    event = the_event(session, shop_a, shop_a.clerk, audit_action, pending)
    held = session.get(Appointment, shop_a.held.id)
    assert event.before == {"status": "pending", "booking_status": "pending_payment"}
    assert event.after == {"status": status, "booking_status": booking_status or held.status}
    assert event.after["booking_status"] != "pending_payment"
    # Marking it again is ignored by the loop, and leaves no second row.
    act(clerk_client, "payments", action, pending.id)
    assert len(events(session)) == 1


@pytest.mark.parametrize(
    ("decision", "audit_action", "changed"),
    [
        ("desk", "deposit_at_desk", ("paid_minor", 0, 2000)),
        ("waive", "deposit_waived", ("deposit_waived", False, True)),
    ],
)
def test_deposit_decisions_are_recorded_with_the_reason(
    owner_client, session, shop_a, decision, audit_action, changed
):
    held = shop_a.held
    url = f"/admin/appointments/deposit/?id={held.id}"
    assert post(owner_client, url, {"decision": decision, "reason": ""}).status_code == 422
    assert events(session) == []
    response = post(owner_client, url, {"decision": decision, "reason": "regular, paid cash"})
    assert response.status_code == 302
    event = the_event(session, shop_a, shop_a.owner, audit_action, held)
    field, was, became = changed
    assert event.before == {"status": "pending_payment", field: was}
    assert event.after == {"status": "booked", field: became}
    assert event.note == "regular, paid cash"
    # Deciding again is refused (the booking is no longer waiting): no second row.
    again = post(owner_client, url, {"decision": decision, "reason": "twice"})
    assert again.status_code == 422
    assert len(events(session)) == 1


def refund_key(client, booking) -> str:
    form = page(client.get(f"/admin/appointments/refund/?id={booking.id}"))
    return re.search(r'name="form_token" type="hidden" value="([^"]+)"', form).group(1)


def test_a_refund_is_recorded_once_however_often_it_is_submitted(owner_client, session, shop_a):
    booking, payment = shop_a.booking, shop_a.payment
    url = f"/admin/appointments/refund/?id={booking.id}"
    data = {
        "payment_id": payment.id,
        "amount": "5.00",
        "reason": "goodwill",
        "form_token": refund_key(owner_client, booking),
    }
    assert post(owner_client, url, data).status_code == 302
    assert post(owner_client, url, data).status_code == 302  # the same form again
    event = the_event(session, shop_a, shop_a.owner, "refund", payment)
    assert event.before == {"refunded_minor": 0}
    assert event.after == {"refunded_minor": 500}
    [refund] = session.get(Payment, payment.id).refunds
    assert event.note == f"refund #{refund.id}: goodwill"


def test_a_refused_refund_records_nothing(owner_client, session, shop_a):
    url = f"/admin/appointments/refund/?id={shop_a.booking.id}"
    data = {
        "payment_id": shop_a.payment.id,
        "amount": "25.00",
        "reason": "too much",
        "form_token": refund_key(owner_client, shop_a.booking),
    }
    assert post(owner_client, url, data).status_code == 422
    assert events(session) == []


def edit_form(appt, **changes) -> dict:
    return {
        "customer": appt.customer_id,
        "service": appt.service_id,
        "resource": appt.resource_id,
        "starts_at": f"{appt.starts_at:%Y-%m-%dT%H:%M}",  # London is on GMT in January
        **changes,
    }


def test_moving_a_booking_records_its_old_and_new_time(owner_client, session, shop_a):
    booking = shop_a.booking
    old_start, old_end = booking.starts_at, booking.ends_at
    new_start = old_start + timedelta(hours=4)
    url = f"/admin/appointments/edit/?id={booking.id}"
    data = edit_form(booking, starts_at=f"{new_start:%Y-%m-%dT%H:%M}")
    assert post(owner_client, url, data).status_code == 302
    event = the_event(session, shop_a, shop_a.owner, "move", booking)
    assert event.before == {"starts_at": iso(old_start), "ends_at": iso(old_end)}
    assert event.after == {
        "starts_at": iso(new_start),
        "ends_at": iso(new_start + (old_end - old_start)),
    }
    # Saved again unchanged: nothing happened, nothing recorded.
    assert post(owner_client, url, data).status_code == 302
    assert len(events(session)) == 1


def test_a_refused_move_records_nothing(owner_client, session, shop_a):
    other = f.appointment(
        session,
        shop_a.chair,
        shop_a.customers[1],
        shop_a.service,
        starts_at=shop_a.booking.starts_at + timedelta(hours=2),
    )
    session.commit()
    data = edit_form(other, starts_at=f"{shop_a.booking.starts_at:%Y-%m-%dT%H:%M}")
    response = post(owner_client, f"/admin/appointments/edit/?id={other.id}", data)
    assert "That resource is already booked at that time" in page(response)
    assert events(session) == []


def test_changing_a_bookings_customer_is_recorded_as_an_edit(owner_client, session, shop_a):
    booking = shop_a.booking
    data = edit_form(booking, customer=shop_a.customers[1].id)
    assert post(owner_client, f"/admin/appointments/edit/?id={booking.id}", data).status_code == 302
    event = the_event(session, shop_a, shop_a.owner, "booking_edited", booking)
    assert event.before == {"customer_id": shop_a.customers[0].id}
    assert event.after == {"customer_id": shop_a.customers[1].id}


def live_offer_id(session, opening) -> int | None:
    session.expire_all()
    return session.scalar(
        select(SlotOffer.id).where(
            SlotOffer.slot_opening_id == opening.id, SlotOffer.status == "sent"
        )
    )


def test_retrigger_records_who_holds_the_live_offer(clerk_client, session, shop_a):
    opening, offer = shop_a.opening, shop_a.offer
    act(clerk_client, "openings", "retrigger", opening.id)
    event = the_event(session, shop_a, shop_a.clerk, "retrigger", opening)
    status = session.get(SlotOpening, opening.id).status
    before, after = {"live_offer_id": offer.id}, {"live_offer_id": live_offer_id(session, opening)}
    if status != "open":  # nobody left to offer: the opening expired too
        before["status"], after["status"] = "open", status
    assert (event.before, event.after) == (before, after)
    assert event.note.startswith("expired; next:")


def test_expiring_an_opening_is_recorded_once(owner_client, session, shop_a):
    opening, offer = shop_a.opening, shop_a.offer
    act(owner_client, "openings", "expire", opening.id)
    event = the_event(session, shop_a, shop_a.owner, "expire_opening", opening)
    assert event.before == {"status": "open", "live_offer_id": offer.id}
    assert event.after == {"status": "expired", "live_offer_id": None}
    act(owner_client, "openings", "expire", opening.id)  # "left as it is"
    assert len(events(session)) == 1


def test_expiring_an_offer_is_recorded_once(owner_client, session, clock, shop_a):
    offer = shop_a.offer
    expires = offer.expires_at
    act(owner_client, "offers", "expire", offer.id)
    event = the_event(session, shop_a, shop_a.owner, "expire_offer", offer)
    assert event.before == {"status": "sent", "expires_at": iso(expires)}
    assert event.after == {"status": "expired", "expires_at": iso(clock.now)}
    act(owner_client, "offers", "expire", offer.id)  # "offer already expired"
    assert len(events(session)) == 1


def test_settings_changes_record_only_what_changed(owner_client, session, shop_a):
    url = f"/admin/shop_settings/edit/?id={shop_a.shop.id}"
    unchanged = settings_form(shop_a.shop)
    assert post(owner_client, url, unchanged).status_code == 302
    assert events(session) == []
    form = settings_form(shop_a.shop, offer_ttl_minutes=25, late_refund_percent=10)
    before = (shop_a.shop.offer_ttl_minutes, shop_a.shop.late_refund_percent)
    assert post(owner_client, url, form).status_code == 302
    event = the_event(session, shop_a, shop_a.owner, "settings_changed", shop_a.shop)
    assert event.before == {"offer_ttl_minutes": before[0], "late_refund_percent": before[1]}
    assert event.after == {"offer_ttl_minutes": 25, "late_refund_percent": 10}


def block_form(world, starts_at, ends_at, **extra) -> dict:
    return {
        "resource": str(world.chair.id),
        "starts_at": f"{starts_at:%Y-%m-%dT%H:%M}",
        "ends_at": f"{ends_at:%Y-%m-%dT%H:%M}",
        "reason": "Training day",
        **extra,
    }


def test_busy_time_that_withdraws_an_opening_is_recorded(owner_client, session, shop_a):
    opening = shop_a.opening
    start, end = opening.starts_at - timedelta(hours=1), opening.ends_at + timedelta(hours=1)
    assert post(owner_client, "/admin/blocks/new/", block_form(shop_a, start, end)).status_code == (
        302
    )
    [event] = events(session)
    block_id = event.target_id
    assert (event.shop_id, event.staff_id, event.action) == (
        shop_a.shop.id,
        shop_a.owner.id,
        "block_added",
    )
    assert event.target_type == "busy_blocks" and block_id is not None
    assert event.before is None
    assert event.after == {
        "resource_id": shop_a.chair.id,
        "starts_at": iso(start),
        "ends_at": iso(end),
        "reason": "Training day",
        "withdrawn_openings": [opening.id],
    }
    assert session.get(SlotOpening, opening.id).status == "expired"

    url = f"/admin/blocks/edit/?id={block_id}"
    assert post(owner_client, url, block_form(shop_a, start, end, reason="Stock")).status_code == (
        302
    )
    changed = events(session)[1]
    assert changed.action == "block_changed" and changed.target_id == block_id
    assert (changed.before, changed.after) == ({"reason": "Training day"}, {"reason": "Stock"})

    assert post(owner_client, "/admin/blocks/delete/", {"id": str(block_id)}).status_code == 302
    deleted = events(session)[2]
    assert deleted.action == "block_deleted" and deleted.target_id == block_id
    assert deleted.before["reason"] == "Stock" and deleted.after is None


# ---------------------------------------------------------------- one transaction


def test_the_row_is_written_in_the_actions_own_transaction(owner_client, session, shop_a):
    """PostgreSQL stamps every row version with the transaction that wrote it (``xmin``):
    the cancelled booking and its audit row carry the same one."""
    act(owner_client, "appointments", "cancel", shop_a.booking.id)
    [event] = events(session)
    booking_xmin = session.scalar(
        text("SELECT xmin::text FROM appointments WHERE id = :id"), {"id": shop_a.booking.id}
    )
    event_xmin = session.scalar(
        text("SELECT xmin::text FROM audit_events WHERE id = :id"), {"id": event.id}
    )
    assert booking_xmin == event_xmin


@pytest.fixture
def audit_insert_fails(session):
    """Make writing an audit row fail, for this test's transaction only."""
    # Created inside the test's outer transaction: rolled back with it.
    session.execute(
        text(
            "CREATE FUNCTION test_refuse_audit_insert() RETURNS trigger LANGUAGE plpgsql AS $$ "
            "BEGIN RAISE EXCEPTION 'audit row refused for the test'; END $$"
        )
    )
    session.execute(
        text(
            "CREATE TRIGGER test_refuse_audit_insert BEFORE INSERT ON audit_events "
            "FOR EACH ROW EXECUTE FUNCTION test_refuse_audit_insert()"
        )
    )
    session.commit()


def test_no_audit_row_no_action_cancel(owner_client, session, shop_a, audit_insert_fails):
    with pytest.raises(DBAPIError, match="audit row refused"):
        act(owner_client, "appointments", "cancel", shop_a.booking.id)
    session.rollback()
    session.expire_all()
    assert session.get(Appointment, shop_a.booking.id).status == "booked"
    assert session.get(Payment, shop_a.payment.id).refunded_minor == 0
    opened = select(SlotOpening).where(SlotOpening.source_appointment_id == shop_a.booking.id)
    assert session.scalar(opened) is None
    assert events(session) == []


def test_no_audit_row_no_settings_change(owner_client, session, shop_a, audit_insert_fails):
    url = f"/admin/shop_settings/edit/?id={shop_a.shop.id}"
    old = shop_a.shop.offer_ttl_minutes
    response = post(owner_client, url, settings_form(shop_a.shop, offer_ttl_minutes=old + 5))
    # Flask-Admin reports the failed save on the form and rolls the whole edit back.
    assert response.status_code == 200
    session.expire_all()
    assert session.get(Shop, shop_a.shop.id).offer_ttl_minutes == old
    assert events(session) == []


# ---------------------------------------------------------------- the owner's page


@pytest.fixture
def both_trails(app, session, owner_client, shop_a, shop_b):
    """Each shop's owner cancels their own booking and expires their own opening."""
    act(owner_client, "appointments", "cancel", shop_a.booking.id)
    act(owner_client, "openings", "expire", shop_a.opening.id)
    b_client = app.test_client()
    assert login(b_client, shop_b.owner.email, PASSWORD).status_code == 302
    act(b_client, "appointments", "cancel", shop_b.booking.id)
    act(b_client, "openings", "expire", shop_b.opening.id)
    trail_a, trail_b = events(session, shop_a.shop), events(session, shop_b.shop)
    assert len(trail_a) == len(trail_b) == 2
    return trail_a, trail_b, b_client


def test_the_owner_reads_their_trail_newest_first(owner_client, session, shop_a, both_trails):
    trail_a, _, _ = both_trails
    listing = page(get(owner_client, "/admin/audit/"))
    first = listing.index('data-action="expire_opening"')
    second = listing.index('data-action="cancel"')
    assert first < second  # newest first
    assert "Opening expired" in listing and "Booking cancelled" in listing
    assert shop_a.owner.email in listing
    assert "status: booked &rarr; cancelled" in listing
    assert f"/admin/openings/details/?id={shop_a.opening.id}" in listing
    assert "Mon 12 Jan 2026, 09:00" in listing  # shop time
    details = get(owner_client, f"/admin/audit/details/?id={trail_a[0].id}")
    assert details.status_code == 200
    assert "Booking cancelled" in page(details)


def test_the_trail_never_shows_another_shops_rows(
    owner_client, session, shop_a, shop_b, both_trails
):
    _, trail_b, b_client = both_trails
    listing = page(get(owner_client, "/admin/audit/"))
    # Not in the rows, nor among the staff filter's options.
    assert shop_b.owner.email not in listing
    assert f"/admin/appointments/details/?id={shop_b.booking.id}" not in listing
    for event in trail_b:
        assert get(owner_client, f"/admin/audit/details/?id={event.id}").status_code == 404
    # Filtering by B's owner finds nothing; by an action, only A's rows.
    by_b = {"flt0_staff_member_equals": shop_b.owner.email}
    assert "data-action=" not in page(get(owner_client, "/admin/audit/", query_string=by_b))
    by_action = page(get(owner_client, "/admin/audit/?flt0_action_equals=cancel"))
    assert f"/admin/appointments/details/?id={shop_a.booking.id}" in by_action
    assert f"/admin/appointments/details/?id={shop_b.booking.id}" not in by_action
    # And B sees their own, not A's.
    listing_b = page(get(b_client, "/admin/audit/"))
    assert shop_b.owner.email in listing_b and shop_a.owner.email not in listing_b


def test_filters_narrow_the_trail(owner_client, session, shop_a, both_trails):
    cancels = page(get(owner_client, "/admin/audit/?flt0_action_equals=cancel"))
    assert 'data-action="cancel"' in cancels and 'data-action="expire_opening"' not in cancels
    openings = page(get(owner_client, "/admin/audit/?flt0_target_equals=slot_openings"))
    assert 'data-action="expire_opening"' in openings and 'data-action="cancel"' not in openings
    mine = {"flt0_staff_member_equals": shop_a.owner.email}
    assert 'data-action="cancel"' in page(get(owner_client, "/admin/audit/", query_string=mine))
    today = page(get(owner_client, "/admin/audit/?flt0_when_on=2026-01-12"))
    assert 'data-action="cancel"' in today
    since = page(get(owner_client, "/admin/audit/?flt0_when_from=2026-01-13"))
    assert "data-action=" not in since
    until = page(get(owner_client, "/admin/audit/?flt0_when_until=2026-01-11"))
    assert "data-action=" not in until


def test_plain_staff_cannot_open_the_trail(clerk_client, shop_a, both_trails):
    trail_a, _, _ = both_trails
    assert get(clerk_client, "/admin/audit/").status_code == 403
    assert get(clerk_client, f"/admin/audit/details/?id={trail_a[0].id}").status_code == 403
    assert "/admin/audit/" not in page(get(clerk_client, "/admin/appointments/"))


def test_the_trail_offers_no_way_to_write(owner_client, session, shop_a, both_trails):
    trail_a, _, _ = both_trails
    ident = trail_a[0].id
    listing = page(get(owner_client, "/admin/audit/"))
    for url in ("new", "edit", "delete", "action", "export"):
        assert f"/admin/audit/{url}/" not in listing
    assert get(owner_client, "/admin/audit/new/").status_code == 403
    assert get(owner_client, f"/admin/audit/edit/?id={ident}").status_code == 403
    assert get(owner_client, "/admin/audit/export/csv/").status_code == 403
    created = post(owner_client, "/admin/audit/new/", {"action": "refund", "note": "x"})
    assert created.status_code == 403
    edited = post(owner_client, f"/admin/audit/edit/?id={ident}", {"note": "rewritten"})
    assert edited.status_code == 403
    assert post(owner_client, "/admin/audit/delete/", {"id": ident}).status_code == 403
    assert act(owner_client, "audit", "delete", ident).status_code == 403
    assert [(e.id, e.note, e.before, e.after) for e in events(session, shop_a.shop)] == [
        (e.id, e.note, e.before, e.after) for e in trail_a
    ]


# ---------------------------------------------------------------- the database refuses


@pytest.fixture
def one_event(session, shop_a) -> AuditEvent:
    event = audit.record(
        session, shop_a.owner, AuditAction.REFUND, shop_a.payment, {"a": 1}, {"a": 2}, "kept"
    )
    session.commit()
    return event


REFUSED = r"audit_events is append-only: (UPDATE|DELETE|TRUNCATE) refused"


@pytest.mark.parametrize(
    "attempt",
    [
        pytest.param(lambda s, e: setattr(e, "note", "rewritten") or s.flush(), id="orm-update"),
        pytest.param(lambda s, e: s.delete(e) or s.flush(), id="orm-delete"),
        pytest.param(
            lambda s, e: s.execute(update(AuditEvent).values(note="rewritten")), id="update"
        ),
        pytest.param(lambda s, e: s.execute(delete(AuditEvent)), id="delete"),
        pytest.param(lambda s, e: s.execute(text("TRUNCATE audit_events")), id="truncate"),
        pytest.param(
            lambda s, e: s.execute(text("TRUNCATE audit_events CASCADE")), id="truncate-cascade"
        ),
    ],
)
def test_the_apps_session_cannot_change_or_remove_a_row(session, one_event, attempt):
    with pytest.raises(DBAPIError, match=REFUSED):
        attempt(session, one_event)
    session.rollback()
    [kept] = events(session)
    assert (kept.id, kept.note, kept.before, kept.after) == (
        one_event.id,
        "kept",
        {"a": 1},
        {"a": 2},
    )


@pytest.fixture
def committed_event(committed):
    """A row really committed, so other connections of the app's engine see it."""
    shop = f.shop(committed)
    owner = f.staff(committed, shop)
    audit.record(committed, owner, AuditAction.SETTINGS_CHANGED, shop, {"a": 1}, {"a": 2})
    committed.commit()
    ident = committed.scalar(select(AuditEvent.id))
    committed.rollback()  # hold no lock: TRUNCATE below would wait for it
    return ident


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_events SET note = 'rewritten'",
        "DELETE FROM audit_events",
        "TRUNCATE audit_events",
    ],
)
def test_the_apps_engine_cannot_change_or_remove_a_row(committed_event, statement):
    # Each statement on a connection of its own from the app's pool, as a job would.
    with pytest.raises(DBAPIError, match=REFUSED), db.engine.begin() as conn:
        conn.execute(text(statement))
    with db.engine.connect() as conn:
        rows = conn.execute(text("SELECT id, note FROM audit_events")).all()
    assert [tuple(r) for r in rows] == [(committed_event, "")]
