"""``POST /webhooks/twilio/sms``: inbound SMS, verified, recorded once, answered in TwiML."""

from __future__ import annotations

import hmac
import logging
import re
from urllib.parse import urlsplit
from xml.sax.saxutils import escape

from flask import Blueprint, Response, abort, current_app, request
from twilio.request_validator import RequestValidator

from recovery.db import db, utcnow
from recovery.models import Message
from recovery.offers.inbound import InboundSms, handle_inbound

log = logging.getLogger(__name__)
bp = Blueprint("twilio_webhooks", __name__, url_prefix="/webhooks/twilio")


# Twilio's message ids: SM (SMS) or MM (MMS) and 32 lowercase hex digits. Anything else
# is not Twilio's, however it is signed (a regrouped replay must not pass as new).
MESSAGE_SID = re.compile(r"(SM|MM)[0-9a-f]{32}")


def public_url() -> str:
    """The URL Twilio signed: ``PUBLIC_BASE_URL`` (required in production) and the path.

    Never built from ``X-Forwarded-Proto``/``-Host``: anyone can send those, and a request
    signed for another host must not validate here. Without ``PUBLIC_BASE_URL``
    (development, tests) the URL the request came to, as it is.
    """
    path = request.full_path if request.query_string else request.path
    base = current_app.config.get("PUBLIC_BASE_URL")
    if base:
        return base + path
    return request.url


def verify_signature() -> None:
    token = current_app.config.get("TWILIO_AUTH_TOKEN")
    signature = request.headers.get("X-Twilio-Signature", "")
    if not token or not signature:
        log.warning("twilio webhook refused: %s", "no auth token" if not token else "no signature")
        abort(403)
    # RequestValidator compares in constant time and tries the URL with and without port.
    if not RequestValidator(token).validate(public_url(), request.form.to_dict(), signature):
        log.warning("twilio webhook refused: bad signature for %s", urlsplit(public_url()).path)
        abort(403)
    # A signature proves the auth token, not the account: refuse another account's
    # deliveries (a subaccount sharing the token, a misrouted number).
    account = current_app.config.get("TWILIO_ACCOUNT_SID")
    if account and not hmac.compare_digest(
        request.form.get("AccountSid", "").encode(), account.encode()
    ):
        log.warning("twilio webhook refused: AccountSid is not this deployment's")
        abort(403)


TWIML_EMPTY = '<?xml version="1.0" encoding="UTF-8"?><Response />'
TWIML_MESSAGE = '<?xml version="1.0" encoding="UTF-8"?><Response><Message>{}</Message></Response>'


def twiml(text: str | None) -> Response:
    """The answer in TwiML: the text as one ``<Message>``, or nothing to send.

    The same bytes as the Twilio SDK's ``MessagingResponse`` (tested), written out here
    because its ElementTree build took 0.1 ms of CPU a text. The text is escaped as
    ElementTree escapes element text (``&``, ``<``, ``>``)."""
    body = TWIML_MESSAGE.format(escape(text)) if text else TWIML_EMPTY
    return Response(body, mimetype="application/xml")


def _field(*names: str) -> str:
    """The first non-empty form field of ``names``. PostgreSQL text cannot hold NUL, so it
    is dropped here rather than failing the delivery (Twilio would retry a 5xx forever)."""
    form = request.form
    value = next((form[n] for n in names if form.get(n)), "")
    return value.replace("\x00", "")


@bp.post("/sms")
def inbound_sms() -> Response:
    verify_signature()
    sid = _field("MessageSid", "SmsSid")
    sender = _field("From")
    if not sid or not sender:
        return Response("MessageSid and From are required", status=400)
    if not MESSAGE_SID.fullmatch(sid):
        return Response("MessageSid is not a Twilio message id", status=400)
    sms = InboundSms(sid=sid, from_number=sender, to_number=_field("To"), body=_field("Body"))
    reply = handle_inbound(db.session, sms, utcnow())
    db.session.commit()
    return twiml(reply.text)


@bp.post("/status")
def delivery_status() -> Response:
    """Delivery receipts (StatusCallback): keep the message's status current."""
    verify_signature()
    sid = _field("MessageSid")
    status = _field("MessageStatus")
    if not MESSAGE_SID.fullmatch(sid):
        return Response("MessageSid is not a Twilio message id", status=400)
    if status in ("delivered", "failed", "undelivered", "sent"):
        message = db.session.query(Message).filter_by(provider_sid=sid).one_or_none()
        if message is not None and message.status not in ("delivered", "failed"):
            message.status = "failed" if status == "undelivered" else status
            code = _field("ErrorCode")[:40]
            message.error = f"provider error {code}" if code else None
            db.session.commit()
    return Response(status=204)
