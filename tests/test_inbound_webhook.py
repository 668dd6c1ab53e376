"""POST /webhooks/twilio/sms: signatures, keywords, duplicates, opt-out."""

import pytest
from sqlalchemy import func, select
from twilio.request_validator import RequestValidator

from recovery.booking import cancellation
from recovery.effects import EffectKind
from recovery.messaging.gateway import SandboxSender
from recovery.messaging.outbox import deliver
from recovery.models import Customer, Message, OfferStatus, OpeningStatus, SlotOffer
from recovery.offers import offering, openings
from tests import factories as f
from tests.scenario import scene, send_texts
from tests.twilio_signing import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    SHOP_NUMBER,
    new_sid,
    reply_text,
    signed_post,
)


@pytest.fixture
def offered(session, clock, recorder):
    """An opening offered to the first of three customers."""
    s = scene(session, clock.now)
    opening = cancellation.cancel_appointment(session, s.booking.id, now=clock.now).opening
    offering.offer_next(session, opening.id, now=clock.now)
    session.commit()
    return s, opening, openings.live_offer(session, opening.id)


def messages(session) -> int:
    return session.scalar(select(func.count()).select_from(Message))


def test_missing_signature_is_refused_and_changes_nothing(client, session, offered):
    s, _, offer = offered
    before = messages(session)
    response = client.post(
        "/webhooks/twilio/sms",
        data={
            "MessageSid": new_sid(),
            "From": s.customers[0].phone,
            "To": SHOP_NUMBER,
            "Body": "YES",
        },
    )
    assert response.status_code == 403
    assert messages(session) == before and offer.status == OfferStatus.SENT


def test_wrong_signature_is_refused_and_changes_nothing(client, session, offered):
    s, _, offer = offered
    params = {
        "MessageSid": new_sid(),
        "From": s.customers[0].phone,
        "To": SHOP_NUMBER,
        "Body": "YES",
    }
    forged = RequestValidator("not-the-token").compute_signature(
        "http://localhost/webhooks/twilio/sms", params
    )
    response = client.post(
        "/webhooks/twilio/sms", data=params, headers={"X-Twilio-Signature": forged}
    )
    assert response.status_code == 403
    session.expire_all()
    assert offer.status == OfferStatus.SENT


def test_tampered_body_is_refused(client, session, offered):
    s, _, _offer = offered
    params = {
        "MessageSid": new_sid(),
        "From": s.customers[0].phone,
        "To": SHOP_NUMBER,
        "Body": "NO",
    }
    signature = RequestValidator(AUTH_TOKEN).compute_signature(
        "http://localhost/webhooks/twilio/sms", params
    )
    response = client.post(
        "/webhooks/twilio/sms",
        data={**params, "Body": "YES"},
        headers={"X-Twilio-Signature": signature},
    )
    assert response.status_code == 403


def test_behind_a_proxy_the_public_url_is_what_twilio_signed(make_app, session, offered):
    s, _, _ = offered
    app = make_app(PUBLIC_BASE_URL="https://slots.example.com", TWILIO_AUTH_TOKEN=AUTH_TOKEN)
    client = app.test_client()
    ok = signed_post(
        client, "HELP", s.customers[0].phone, url="https://slots.example.com/webhooks/twilio/sms"
    )
    assert ok.status_code == 200
    internal = signed_post(client, "HELP", s.customers[0].phone)  # signed for http://localhost
    assert internal.status_code == 403


def test_forwarded_headers_never_choose_the_signed_url(make_app, session, offered):
    """A request signed for another host (say, another deployment's webhook, whose token
    leaked or is shared) does not validate here by adding forwarded headers."""
    s, _, offer = offered
    forged_headers = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "other.example.org"}
    for base in (None, "https://slots.example.com"):
        app = make_app(PUBLIC_BASE_URL=base, TWILIO_AUTH_TOKEN=AUTH_TOKEN)
        response = signed_post(
            app.test_client(),
            "YES",
            s.customers[0].phone,
            url="https://other.example.org/webhooks/twilio/sms",
            headers=forged_headers,
        )
        assert response.status_code == 403, base
    session.expire_all()
    assert offer.status == OfferStatus.SENT


@pytest.mark.parametrize(
    "sid",
    [
        "SM" + "0" * 31,  # short
        "SM" + "0" * 33,  # long: a replay with its fields regrouped into the sid
        "SM" + "0" * 32 + "&Body=YES",
        "XX" + "0" * 32,
        "SM" + "G" * 32,
    ],
)
def test_a_message_sid_not_in_twilios_format_is_refused(client, session, offered, sid):
    s, _, offer = offered
    before = messages(session)
    response = signed_post(client, "YES", s.customers[0].phone, sid=sid)
    assert response.status_code == 400
    assert b"MessageSid" in response.data
    session.expire_all()
    assert offer.status == OfferStatus.SENT
    assert messages(session) == before


def test_a_delivery_for_another_account_is_refused(make_app, session, offered):
    s, _, offer = offered
    app = make_app(TWILIO_ACCOUNT_SID=ACCOUNT_SID, TWILIO_AUTH_TOKEN=AUTH_TOKEN)
    client = app.test_client()
    other = signed_post(client, "YES", s.customers[0].phone, AccountSid="AC" + "1" * 32)
    assert other.status_code == 403
    session.expire_all()
    assert offer.status == OfferStatus.SENT
    ours = signed_post(client, "HELP", s.customers[0].phone)
    assert ours.status_code == 200
    assert "STOP" in reply_text(ours)


def test_yes_wins_and_the_answer_says_what_next(client, session, offered):
    s, opening, offer = offered
    response = signed_post(client, "Yes please!", s.customers[0].phone)
    assert response.status_code == 200
    assert response.mimetype == "application/xml"
    assert "Pay the £20 within 15 min to confirm: http://localhost/pay/" in (reply_text(response))
    session.expire_all()
    assert offer.status == OfferStatus.ACCEPTED and opening.status == OpeningStatus.FILLED


@pytest.mark.parametrize(
    "body", ["yes", "Y", " YES ", "yeah.", "Yep!", "ok", "Sure", "yes  please"]
)
def test_yes_synonyms(client, session, offered, body):
    s, _, _offer = offered
    assert "Pay the" in reply_text(signed_post(client, body, s.customers[0].phone))


def test_no_declines_and_the_next_customer_is_offered_right_after(
    client, session, offered, recorder, driver
):
    s, opening, offer = offered
    recorder.clear()
    answer = reply_text(signed_post(client, "no", s.customers[0].phone))
    assert answer == "OK, no problem. We'll offer it to someone else."
    session.expire_all()
    assert offer.status == OfferStatus.DECLINED
    # The reply did not wait for the next offer: the job its commit asked for makes it.
    assert [e.args for e in recorder.of_kind(EffectKind.OFFER_NEXT)] == [(opening.id,)]
    driver.run_due()
    session.expire_all()
    assert openings.live_offer(session, opening.id).customer_id == s.customers[1].id


def test_duplicate_message_sid_has_no_second_effect(client, session, offered, recorder, driver):
    s, opening, _offer = offered
    recorder.clear()
    sid = new_sid()
    first = signed_post(client, "NO", s.customers[0].phone, sid=sid)
    driver.run_due()  # the next customer is offered
    second = signed_post(client, "NO", s.customers[0].phone, sid=sid)
    driver.run_due()
    assert first.status_code == second.status_code == 200
    assert reply_text(second) == ""  # answered, ignored
    session.expire_all()
    second_offer = openings.live_offer(session, opening.id)
    assert second_offer.customer_id == s.customers[1].id  # not skipped past
    inbound = session.scalar(
        select(func.count()).select_from(Message).where(Message.provider_sid == sid)
    )
    assert inbound == 1


def test_stop_stops_everything_for_that_number(client, session, offered, clock):
    s, opening, offer = offered
    first = s.customers[0]
    queued = session.scalar(select(Message).where(Message.slot_offer_id == offer.id))
    answer = reply_text(signed_post(client, "Stop", first.phone))
    assert "unsubscribed" in answer and "START" in answer
    session.expire_all()
    assert first.opted_out_at is not None
    assert offer.status == OfferStatus.DECLINED
    assert queued.status == "suppressed"  # the offer text that had not gone out yet
    # Not offered again, even for another opening, and nothing sent even if queued.
    other = f.resource(session, s.shop)
    booking = f.appointment(
        session, other, s.owner, s.service, starts_at=opening.starts_at, paid=True
    )
    second = cancellation.cancel_appointment(session, booking.id, now=clock.now).opening
    offering.offer_next(session, second.id, now=clock.now)
    offered_second = session.scalars(
        select(SlotOffer.customer_id).where(SlotOffer.slot_opening_id == second.id)
    ).all()
    assert offered_second and first.id not in offered_second
    late = Message(
        shop_id=s.shop.id,
        customer_id=first.id,
        direction="outbound",
        from_number=SHOP_NUMBER,
        to_number=first.phone,
        body="hi",
        purpose="offer",
    )
    session.add(late)
    session.flush()
    assert deliver(session, late.id, SandboxSender(), clock.now) == "suppressed"


@pytest.mark.parametrize(
    "word", ["STOPALL", "unsubscribe", "Cancel", "end", "QUIT", "revoke", "optout", "stop."]
)
def test_stop_synonyms(client, session, offered, word):
    s, _, _ = offered
    assert "unsubscribed" in reply_text(signed_post(client, word, s.customers[0].phone))
    session.expire_all()
    assert s.customers[0].opted_out_at is not None


def test_start_opts_back_in(client, session, offered):
    s, _, _ = offered
    signed_post(client, "STOP", s.customers[1].phone)
    answer = reply_text(signed_post(client, "unstop", s.customers[1].phone))
    assert "subscribed again" in answer
    session.expire_all()
    customer = session.get(Customer, s.customers[1].id)
    assert customer.opted_out_at is None and customer.sms_opt_in


def test_help_names_the_shop_and_how_to_stop(client, session, offered):
    s, _, _ = offered
    answer = reply_text(signed_post(client, "info", s.customers[2].phone))
    assert answer.startswith(s.shop.name) and "+442071234567" in answer and "STOP" in answer


def test_yes_without_any_offer(client, session, offered):
    s, _, _ = offered
    assert reply_text(signed_post(client, "YES", s.customers[2].phone)) == (
        "You have no open offer right now. We'll text you when a slot opens."
    )


def test_yes_to_an_expired_offer_says_so(client, session, offered, clock):
    s, _, _ = offered
    send_texts(session)  # its time to answer starts when the text is accepted
    clock.advance(minutes=16)
    assert "expired" in reply_text(signed_post(client, "YES", s.customers[0].phone))


def test_yes_to_a_taken_slot_says_so(client, session, offered, recorder, driver):
    s, _, _ = offered
    recorder.clear()
    signed_post(client, "NO", s.customers[0].phone)
    driver.run_due()  # offered on to customer 1
    signed_post(client, "YES", s.customers[1].phone)  # who takes it
    assert reply_text(signed_post(client, "YES", s.customers[0].phone)) == (
        "Sorry, this slot has just been taken."
    )


def test_anything_else_gets_short_help(client, session, offered):
    s, _, offer = offered
    answer = reply_text(signed_post(client, "what time is it?", s.customers[0].phone))
    assert answer.startswith("Reply YES to book")
    session.expire_all()
    assert offer.status == OfferStatus.SENT


def test_unknown_number_gets_a_polite_answer_and_no_change(client, session, offered):
    _s, _, offer = offered
    before = session.scalar(select(func.count()).select_from(Customer))
    answer = reply_text(signed_post(client, "YES", "+447911999999"))
    assert answer.startswith("Sorry, we don't recognise this number")
    session.expire_all()
    assert session.scalar(select(func.count()).select_from(Customer)) == before
    assert offer.status == OfferStatus.SENT


def test_missing_fields_are_a_clear_400(client, session, offered):
    params = {"Body": "YES"}
    signature = RequestValidator(AUTH_TOKEN).compute_signature(
        "http://localhost/webhooks/twilio/sms", params
    )
    response = client.post(
        "/webhooks/twilio/sms", data=params, headers={"X-Twilio-Signature": signature}
    )
    assert response.status_code == 400


def test_a_shop_without_its_own_number_is_reached_at_the_default(client, session, offered):
    from recovery.messaging.gateway import SANDBOX_FROM_NUMBER

    s, _, _ = offered
    s.shop.sms_from_number = None
    session.commit()
    answer = reply_text(signed_post(client, "help", s.customers[0].phone, to=SANDBOX_FROM_NUMBER))
    assert answer.startswith(s.shop.name)
    wrong = reply_text(signed_post(client, "help", s.customers[0].phone, to="+447700900999"))
    assert wrong.startswith("Sorry, we don't recognise this number")


def test_yes_after_saying_no_is_told_there_is_no_offer(client, session, offered):
    s, _, _ = offered
    signed_post(client, "no", s.customers[0].phone)
    assert reply_text(signed_post(client, "yes", s.customers[0].phone)).startswith(
        "You have no open offer right now"
    )


def test_the_answer_is_secured_and_sessionless(client, session, offered):
    """Webhooks skip the cookie session and the sign-in throttle (app.py), not the
    security headers; a staff cookie sent along is not even read."""
    s, _, _ = offered
    client.set_cookie("session", "not-a-staff-session")
    response = signed_post(client, "HELP", s.customers[0].phone)
    assert response.status_code == 200
    headers = response.headers
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Referrer-Policy"] == "strict-origin-when-cross-origin"
    assert "Set-Cookie" not in headers and "Vary" not in headers


def test_the_twiml_is_the_twilio_sdks(client, session, offered):
    """The answer is written out by hand (recovery/http/twilio.py): the same bytes as the
    SDK's MessagingResponse, markup in a shop's name escaped."""
    from twilio.twiml.messaging_response import MessagingResponse

    s, _, _ = offered
    s.shop.name = 'Cut & <Dye> "Bar"'
    session.commit()
    answer = signed_post(client, "HELP", s.customers[0].phone)
    expected = MessagingResponse()
    expected.message(reply_text(answer))
    assert answer.get_data(as_text=True) == str(expected)
    assert reply_text(answer).startswith('Cut & <Dye> "Bar"')
    duplicate = signed_post(client, "HELP", s.customers[0].phone, sid="SM" + "f" * 32)
    again = signed_post(client, "HELP", s.customers[0].phone, sid="SM" + "f" * 32)
    assert duplicate.status_code == again.status_code == 200
    assert again.get_data(as_text=True) == str(MessagingResponse())
