"""Twilio deliveries repeated, reordered and forged: each takes effect once, forgeries none.

Twilio retries a webhook it thinks failed, so the same ``MessageSid`` can arrive several
times; delivery receipts (status callbacks) can arrive late and in any order. Anyone can
post to the public webhook URLs, so a request without a valid ``X-Twilio-Signature`` must
be refused before it touches anything.
"""

from __future__ import annotations

import hashlib

import pytest
from sqlalchemy import func, select, text
from twilio.request_validator import RequestValidator

from recovery.booking import cancellation
from recovery.db import db
from recovery.effects import EffectKind
from recovery.models import (
    Appointment,
    Direction,
    Message,
    OfferStatus,
    Payment,
    SlotOffer,
)
from recovery.offers import offering, openings
from tests.scenario import scene
from tests.twilio_signing import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    SHOP_NUMBER,
    new_sid,
    reply_text,
    signed_post,
)

URL = "http://localhost/webhooks/twilio"
UNKNOWN = "+447911999999"


@pytest.fixture
def offered(session, clock, recorder):
    """An opening offered to the first of three customers; its offer SMS already sent."""
    s = scene(session, clock.now)
    opening = cancellation.cancel_appointment(session, s.booking.id, now=clock.now).opening
    offering.offer_next(session, opening.id, now=clock.now)
    offer = openings.live_offer(session, opening.id)
    sms = session.scalar(select(Message).where(Message.slot_offer_id == offer.id))
    sms.status, sms.provider_sid = "sent", "SM" + "0" * 32
    session.commit()
    recorder.clear()  # what setting up asked for is not what the test is about
    return s, opening, offer


def fingerprint(session) -> dict[str, str]:
    """A digest of every row of every table: equal fingerprints mean nothing changed."""
    session.flush()
    digests = {}
    for table in db.metadata.sorted_tables:
        rows = session.execute(
            text(f"SELECT t::text FROM {table.name} t ORDER BY 1")  # names from our metadata
        ).scalars()
        digests[table.name] = hashlib.sha256("\n".join(rows).encode()).hexdigest()
    return digests


def count(session, model, *where) -> int:
    return session.scalar(select(func.count()).select_from(model).where(*where))


# ------------------------------------------------------------------ three deliveries each


@pytest.mark.parametrize(
    "body, sender",
    [
        ("YES", "offered"),
        ("NO", "offered"),
        ("STOP", "offered"),
        ("START", "offered"),
        ("HELP", "offered"),
        ("what time is it?", "offered"),
        ("YES", "other"),
        ("YES", "unknown"),
    ],
)
def test_each_inbound_delivery_three_times_takes_effect_once(
    client, session, offered, recorder, body, sender
):
    s, _, _ = offered
    phone = {
        "offered": s.customers[0].phone,
        "other": s.customers[2].phone,
        "unknown": UNKNOWN,
    }[sender]
    sid = new_sid()
    first = signed_post(client, body, phone, sid=sid)
    after_first = fingerprint(session)
    effects_after_first = list(recorder.effects)
    again = [signed_post(client, body, phone, sid=sid) for _ in range(2)]

    assert [r.status_code for r in (first, *again)] == [200, 200, 200]
    assert reply_text(first) != ""  # the message is answered once...
    assert [reply_text(r) for r in again] == ["", ""]  # ...and its redeliveries are not
    assert fingerprint(session) == after_first  # nothing at all changed after the first
    assert recorder.effects == effects_after_first  # and no job was asked for again
    assert count(session, Message, Message.provider_sid == sid) == 1
    replies = count(
        session,
        Message,
        Message.direction == Direction.OUTBOUND,
        Message.to_number == phone,
        Message.purpose == "reply",
    )
    assert replies == 1


def test_yes_no_yes_in_three_deliveries_each_keeps_the_first_outcome(
    client, session, offered, recorder
):
    """A YES delivered three times, then a NO three times: one booking, the NO is too late."""
    s, opening, offer = offered
    phone = s.customers[0].phone
    yes_sid, no_sid = new_sid(), new_sid()
    answers = [reply_text(signed_post(client, "yes", phone, sid=yes_sid)) for _ in range(3)]
    answers += [reply_text(signed_post(client, "no", phone, sid=no_sid)) for _ in range(3)]
    assert "Pay the" in answers[0] and answers[1:3] == ["", ""]
    assert answers[3].startswith("You have no open offer") and answers[4:] == ["", ""]
    session.expire_all()
    assert offer.status == OfferStatus.ACCEPTED
    (booking,) = session.scalars(
        select(Appointment).where(Appointment.source_slot_opening_id == opening.id)
    ).all()
    assert count(session, Payment, Payment.appointment_id == booking.id) == 1


def test_no_delivered_three_times_passes_the_slot_on_once(
    client, session, offered, recorder, driver
):
    s, opening, _ = offered
    sid = new_sid()
    recorder.clear()
    for _ in range(3):
        signed_post(client, "no", s.customers[0].phone, sid=sid)
    assert len(recorder.of_kind(EffectKind.OFFER_NEXT)) == 1  # asked for once, not thrice
    driver.run_due()
    session.expire_all()
    offers = session.scalars(
        select(SlotOffer).where(SlotOffer.slot_opening_id == opening.id).order_by(SlotOffer.id)
    ).all()
    # Declined once, and exactly one next customer offered (not three customers skipped).
    assert [(o.customer_id, o.status) for o in offers] == [
        (s.customers[0].id, OfferStatus.DECLINED),
        (s.customers[1].id, OfferStatus.SENT),
    ]
    offer_texts = count(session, Message, Message.purpose == "offer")
    assert offer_texts == 2


# ------------------------------------------------------------------ delivery receipts


def post_status(client, sid: str, status: str, **extra):
    params = {"MessageSid": sid, "AccountSid": ACCOUNT_SID, "MessageStatus": status, **extra}
    signature = RequestValidator(AUTH_TOKEN).compute_signature(f"{URL}/status", params)
    return client.post(
        "/webhooks/twilio/status", data=params, headers={"X-Twilio-Signature": signature}
    )


def message_status(session, sid: str) -> str:
    session.expire_all()
    return session.scalar(select(Message.status).where(Message.provider_sid == sid))


def test_receipts_three_times_each_and_out_of_order_end_delivered(client, session, offered):
    sid = "SM" + "0" * 32  # the offer SMS
    for status in ["delivered"] * 3 + ["sent"] * 3:  # 'sent' arrives last, three times
        assert post_status(client, sid, status).status_code == 204
    assert message_status(session, sid) == "delivered"
    settled = fingerprint(session)
    for status in ("sent", "undelivered", "failed", "delivered"):
        post_status(client, sid, status, ErrorCode="30003")
    assert fingerprint(session) == settled  # a final state is never moved by a late receipt


def test_a_failure_receipt_three_times_is_recorded_once(client, session, offered):
    sid = "SM" + "0" * 32
    for _ in range(3):
        post_status(client, sid, "undelivered", ErrorCode="30005")
    assert message_status(session, sid) == "failed"
    settled = fingerprint(session)
    post_status(client, sid, "delivered")
    assert fingerprint(session) == settled


def test_a_receipt_for_an_unknown_message_changes_nothing(client, session, offered):
    before = fingerprint(session)
    assert post_status(client, "SM" + "f" * 32, "delivered").status_code == 204
    assert fingerprint(session) == before


# ------------------------------------------------------------------ forged or missing signatures


def _sign(params: dict, url: str, token: str = AUTH_TOKEN) -> str:
    return RequestValidator(token).compute_signature(url, params)


def _forgeries(path: str, params: dict) -> dict[str, tuple[dict, dict]]:
    """name -> (form sent, headers sent); none of them is what Twilio would have signed."""
    url = f"{URL}/{path}"
    good = _sign(params, url)
    other_sid = {**params, "MessageSid": new_sid()}
    return {
        "no signature": (params, {}),
        "empty signature": (params, {"X-Twilio-Signature": ""}),
        "garbage signature": (params, {"X-Twilio-Signature": "not base64 at all!"}),
        "signed with another token": (
            params,
            {"X-Twilio-Signature": _sign(params, url, "someone-elses-token")},
        ),
        "signed for another URL": (
            params,
            {"X-Twilio-Signature": _sign(params, f"https://evil.example/webhooks/twilio/{path}")},
        ),
        "signed for the other webhook": (
            params,
            {"X-Twilio-Signature": _sign(params, f"{URL}/{'status' if path == 'sms' else 'sms'}")},
        ),
        "a field changed after signing": (
            {**params, next(iter(params)): params[next(iter(params))] + "x"},
            {"X-Twilio-Signature": good},
        ),
        "a field added after signing": ({**params, "Extra": "1"}, {"X-Twilio-Signature": good}),
        "a field removed after signing": (
            dict(list(params.items())[:-1]),
            {"X-Twilio-Signature": good},
        ),
        "a signature replayed on a new message": (other_sid, {"X-Twilio-Signature": good}),
        "signature in the wrong header": (params, {"X-Twilio-Signature-Old": good}),
    }


INBOUND = {"MessageSid": "SM" + "1" * 32, "From": "", "To": SHOP_NUMBER, "Body": "YES"}
RECEIPT = {"MessageSid": "SM" + "0" * 32, "MessageStatus": "failed", "ErrorCode": "30003"}


@pytest.mark.parametrize("forgery", list(_forgeries("sms", {"a": "b"})))
@pytest.mark.parametrize("path", ["sms", "status"])
def test_forged_or_missing_signatures_are_refused_and_change_nothing(
    client, session, offered, recorder, path, forgery
):
    s, _, _ = offered
    params = dict(INBOUND, From=s.customers[0].phone) if path == "sms" else dict(RECEIPT)
    form, headers = _forgeries(path, params)[forgery]
    before = fingerprint(session)
    response = client.post(f"/webhooks/twilio/{path}", data=form, headers=headers)
    assert response.status_code == 403
    assert b"Pay the" not in response.data
    assert fingerprint(session) == before
    assert recorder.effects == []


def test_a_webhook_without_a_configured_token_refuses_everything(make_app, session, offered):
    """A deployment that lost its auth token must not start accepting unsigned posts."""
    s, _, _ = offered
    app = make_app(TWILIO_AUTH_TOKEN=None)
    before = fingerprint(session)
    response = signed_post(app.test_client(), "YES", s.customers[0].phone)
    assert response.status_code == 403
    assert fingerprint(session) == before
