"""SMS senders: Twilio (official SDK) and the sandbox outbox, behind one small interface."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Protocol

from flask import Flask
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from recovery.messaging.gsm import segments

SANDBOX_FROM_NUMBER = "+15005550006"  # shown in the sandbox outbox; nothing is sent

# Rough price of one segment, in minor units of the shop's currency, for the dashboard's
# cost estimate (UK ~4p, euro area ~8c, US ~1c per segment). Not used for billing.
SEGMENT_COST_MINOR = {"GBP": 4, "EUR": 8, "USD": 1}


def estimated_cost_minor(text: str, currency: str) -> int:
    return segments(text) * SEGMENT_COST_MINOR.get(currency, 5)


@dataclass(frozen=True)
class SentSms:
    sid: str
    status: str


class TemporarySendError(RuntimeError):
    """The provider may accept the same message later: retry with backoff."""


class PermanentSendError(RuntimeError):
    """The provider will never accept this message (bad number, blocked, ...)."""


class SmsSender(Protocol):
    name: str

    def send(self, to: str, from_: str, body: str) -> SentSms: ...


class SandboxSender:
    """The embedded default: messages stay in the outbox (the messages table)."""

    name = "sandbox"

    def send(self, to: str, from_: str, body: str) -> SentSms:
        return SentSms(sid="SB" + uuid.uuid4().hex, status="sent")


class TwilioSender:
    name = "twilio"

    def __init__(self, account_sid: str, auth_token: str, api_base_url: str | None = None):
        self.client = Client(account_sid, auth_token, http_client=TwilioHttpClient(timeout=10))
        if api_base_url:
            # Tests and benchmarks: the Api domain's host lives only in base_url. An edge or
            # region would rewrite the host, so clear them.
            self.client.edge = self.client.region = None
            self.client.api.base_url = api_base_url

    def send(self, to: str, from_: str, body: str) -> SentSms:
        try:
            message = self.client.messages.create(to=to, from_=from_, body=body)
        except TwilioRestException as exc:
            # 429 and 5xx are the provider's trouble; other 4xx are about this message.
            if exc.status == 429 or exc.status >= 500:
                raise TemporarySendError(f"Twilio {exc.status}: {exc.msg}") from exc
            raise PermanentSendError(f"Twilio {exc.status} ({exc.code}): {exc.msg}") from exc
        except (TwilioException, OSError) as exc:
            raise TemporarySendError(f"Twilio unreachable: {exc}") from exc
        return SentSms(sid=message.sid, status=message.status or "queued")


_EXTENSION = "recovery.sms_sender"


def sender_for(app: Flask) -> SmsSender:
    """Twilio when configured, else the sandbox; one sender per app."""
    sender = app.extensions.get(_EXTENSION)
    if sender is None:
        cfg = app.config
        if cfg.get("TWILIO_ACCOUNT_SID") and cfg.get("TWILIO_AUTH_TOKEN"):
            sender = TwilioSender(
                cfg["TWILIO_ACCOUNT_SID"], cfg["TWILIO_AUTH_TOKEN"], cfg.get("TWILIO_API_BASE_URL")
            )
        else:
            sender = SandboxSender()
        app.extensions[_EXTENSION] = sender
    return sender


def default_from_number(app: Flask) -> str:
    return app.config.get("TWILIO_FROM_NUMBER") or SANDBOX_FROM_NUMBER
