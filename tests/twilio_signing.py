"""Sign inbound webhook posts the way Twilio does."""

from __future__ import annotations

import itertools

from twilio.request_validator import RequestValidator

AUTH_TOKEN = "test-twilio-token"
# The fake Twilio's account (tests/fake_twilio.py); apps with an account refuse any other.
ACCOUNT_SID = "ACtest00000000000000000000000000"
SHOP_NUMBER = "+447700900000"  # factories.shop() gives the first shop this sender number
_sids = itertools.count(1)


def new_sid() -> str:
    return f"SM{next(_sids):032x}"


def signed_post(
    client,
    body: str,
    from_: str,
    to: str = SHOP_NUMBER,
    sid: str | None = None,
    url: str = "http://localhost/webhooks/twilio/sms",
    headers=None,
    auth_token: str = AUTH_TOKEN,
    **extra,
):
    params = {
        "MessageSid": sid or new_sid(),
        "AccountSid": ACCOUNT_SID,
        "From": from_,
        "To": to,
        "Body": body,
        **extra,
    }
    signature = RequestValidator(auth_token).compute_signature(url, params)
    return client.post(
        "/webhooks/twilio/sms",
        data=params,
        headers={"X-Twilio-Signature": signature, **(headers or {})},
    )


def reply_text(response) -> str:
    """The <Message> text of a TwiML answer ('' for an empty <Response/>)."""
    from xml.etree import ElementTree

    # A Flask test response has ``data``; a ``requests`` response (a live server) ``content``.
    body = response.data if hasattr(response, "data") else response.content
    root = ElementTree.fromstring(body)
    message = root.find("Message")
    return message.text if message is not None else ""
