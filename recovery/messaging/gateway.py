"""SMS senders: Twilio (official SDK) and the sandbox outbox, behind one small interface."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from flask import Flask
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.rest import Client

from recovery.messaging.gsm import segments
from recovery.messaging.transport import TRANSPORT_ERRORS, PooledHttpClient, never_connected

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
    accepted_at: datetime | None = None  # the provider's creation time, when it says


class TemporarySendError(RuntimeError):
    """The provider did not take the message, and may take it later: retry with backoff."""


class UncertainSendError(TemporarySendError):
    """The request may have reached the provider (a read timeout, a connection lost after
    it was sent): the provider may have accepted the message. Look it up (``find``)
    before sending it again."""


class PermanentSendError(RuntimeError):
    """The provider will never accept this message (bad number, blocked, ...)."""


class SmsSender(Protocol):
    name: str

    def send(self, to: str, from_: str, body: str) -> SentSms: ...

    def find(self, to: str, from_: str, body: str, since: datetime) -> list[SentSms]:
        """Messages the provider accepted from ``from_`` to ``to`` with this ``body``,
        created at ``since`` or later, newest first. Raises ``TemporarySendError`` when
        the provider cannot be asked now."""
        ...


class SandboxSender:
    """The embedded default: messages stay in the outbox (the messages table)."""

    name = "sandbox"

    def send(self, to: str, from_: str, body: str) -> SentSms:
        return SentSms(sid="SB" + uuid.uuid4().hex, status="sent")

    def find(self, to: str, from_: str, body: str, since: datetime) -> list[SentSms]:
        return []  # a sandbox send never ends unclear


# Clear refusals the provider gives before taking a message: too many requests, or down.
# Any other 5xx (an edge proxy's 502 or 504, a 500) may come after Twilio took it.
NOT_TAKEN_STATUSES = (429, 503)
LOOKUP_LIMIT = 100  # the newest messages of one sender to one phone that a lookup reads


class TwilioSender:
    name = "twilio"

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        api_base_url: str | None = None,
        timeout: float = 10,
        connections: int = 16,
    ):
        self.http = PooledHttpClient(timeout=timeout, connections=connections)
        self.client = Client(account_sid, auth_token, http_client=self.http)
        if api_base_url:
            # Tests and benchmarks: the Api domain's host lives only in base_url. An edge or
            # region would rewrite the host, so clear them.
            self.client.edge = self.client.region = None
            self.client.api.base_url = api_base_url

    def send(self, to: str, from_: str, body: str) -> SentSms:
        try:
            message = self.client.messages.create(to=to, from_=from_, body=body)
        except TwilioRestException as exc:
            if exc.status in NOT_TAKEN_STATUSES:
                raise TemporarySendError(f"Twilio {exc.status}: {exc.msg}") from exc
            if exc.status >= 500:
                raise UncertainSendError(f"Twilio {exc.status}: {exc.msg}") from exc
            # Other 4xx are about this message: it will never be taken.
            raise PermanentSendError(f"Twilio {exc.status} ({exc.code}): {exc.msg}") from exc
        except (TwilioException, *TRANSPORT_ERRORS) as exc:
            if never_connected(exc):
                raise TemporarySendError(f"Twilio unreachable: {exc}") from exc
            raise UncertainSendError(f"Twilio did not answer: {exc}") from exc
        return SentSms(sid=message.sid, status=message.status or "queued")

    def find(self, to: str, from_: str, body: str, since: datetime) -> list[SentSms]:
        # By recipient and sender only: a message Twilio holds in its queue has no
        # DateSent yet, so a DateSent filter would miss exactly the texts we look for.
        # Twilio lists the newest first; a trial account prefixes the body it stores.
        try:
            return [
                SentSms(sid=m.sid, status=m.status or "queued", accepted_at=m.date_created)
                for m in self.client.messages.stream(to=to, from_=from_, limit=LOOKUP_LIMIT)
                if m.direction == "outbound-api"
                and (m.body or "").endswith(body)
                and m.date_created is not None
                and m.date_created >= since
            ]
        except (TwilioException, *TRANSPORT_ERRORS) as exc:
            raise TemporarySendError(f"Twilio lookup failed: {exc}") from exc

    def close(self) -> None:
        self.http.close()


SENDER_EXTENSION = "recovery.sms_sender"  # app.extensions key of the app's one sender


def sender_for(app: Flask) -> SmsSender:
    """Twilio when configured, else the sandbox; one sender per app."""
    sender = app.extensions.get(SENDER_EXTENSION)
    if sender is None:
        cfg = app.config
        if cfg.get("TWILIO_ACCOUNT_SID") and cfg.get("TWILIO_AUTH_TOKEN"):
            sender = TwilioSender(
                cfg["TWILIO_ACCOUNT_SID"],
                cfg["TWILIO_AUTH_TOKEN"],
                cfg.get("TWILIO_API_BASE_URL"),
                connections=cfg["SEND_CONCURRENCY"],
            )
        else:
            sender = SandboxSender()
        app.extensions[SENDER_EXTENSION] = sender
    return sender


def default_from_number(app: Flask) -> str:
    return app.config.get("TWILIO_FROM_NUMBER") or SANDBOX_FROM_NUMBER
