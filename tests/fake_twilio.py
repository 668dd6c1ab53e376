"""A fake Twilio REST API on loopback, for tests and benchmarks.

It serves just enough of ``api.twilio.com`` for the *real* ``twilio`` SDK (9.13.0) to send SMS
and look them up: ``POST /2010-04-01/Accounts/{AccountSid}/Messages.json`` (create),
``GET`` of the same path (the list, newest first, filtered by ``To``, ``From`` and
``DateSent``, paged by ``PageSize``/``Page``, as ``client.messages.list()`` and ``stream()``
read it) and ``GET .../Messages/{Sid}.json`` (fetch), with HTTP Basic auth and Twilio-style
JSON errors (``code``, ``message``, ``more_info``, ``status``), which the SDK turns into
``TwilioRestException``.

Faults for the sender's side: ``fail_next`` (an error answer, nothing accepted), ``hold``
(no answer until ``release``), ``answer_late`` (accepted at once, answered only after a delay
longer than the client's timeout) and ``hang_up_after_accept`` (accepted, then the connection
is closed without an answer).

How the SDK is pointed at the fake
----------------------------------
Every Twilio product is a ``twilio.base.domain.Domain`` whose ``base_url`` attribute is the
only place the host lives: ``Domain.absolute_url()`` joins ``base_url`` with the versioned path
on every request, and ``ApiBase.__init__`` merely sets it to ``"https://api.twilio.com"``.
``client.api`` is created once and cached by the ``Client``, so overwriting the attribute
redirects every call made through that client's Api domain - ``client.messages.create(...)``
(a shortcut for ``client.api.account.messages``) as well as
``client.api.v2010.account.messages.create(...)``::

    client = Client(account_sid, auth_token)
    client.api.base_url = base_url  # e.g. app.config["TWILIO_API_BASE_URL"]

This was chosen over a custom ``http_client`` that rewrites ``https://api.twilio.com`` URLs
because it is one line, uses a public attribute instead of re-implementing ``HttpClient``,
keeps the SDK's own HTTP stack (requests session, auth, headers, error parsing) untouched, and
touches nothing but the Api domain (other domains such as ``messaging.twilio.com`` keep their
real host, which is what we want: the fake does not serve them).

One caveat: when an edge or region is configured (``edge=``/``region=`` or the ``TWILIO_EDGE``
/ ``TWILIO_REGION`` environment variables, read by ``Client()`` even when ``environment={}``
is passed), ``ClientBase.get_hostname()`` rewrites the host of every URL and would mangle
``127.0.0.1:PORT``. So a client redirected to a fake must also have ``client.edge`` and
``client.region`` set to ``None``, as :func:`twilio_client` does.

The server speaks HTTP/1.0, so each request uses a fresh connection that the server closes
after answering: no pooled socket is left open in the client (pytest turns ResourceWarning
into an error here), at the cost of a TCP handshake per message on loopback.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import re
import secrets
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import format_datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, TypedDict
from urllib.parse import parse_qs, urlencode, urlsplit

from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

API_VERSION = "2010-04-01"
MESSAGES_PATH = re.compile(rf"^/{API_VERSION}/Accounts/(?P<account>[^/]+)/Messages\.json$")
MESSAGE_PATH = re.compile(
    rf"^/{API_VERSION}/Accounts/(?P<account>[^/]+)/Messages/(?P<sid>SM[0-9a-f]{{32}})\.json$"
)
E164 = re.compile(r"^\+[0-9]{8,15}$")
MAX_BODY_CHARS = 1600  # Twilio refuses longer bodies with error 21617

# GSM 03.38 default alphabet (the escape character 0x1B is left out: it cannot be sent alone),
# and the extension table, whose characters take two septets (escape + character).
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENDED = frozenset("\f^{}\\[~]|€")


class SentMessage(TypedDict):
    """What the fake accepted, as the app passed it to ``messages.create``."""

    sid: str
    to: str
    from_: str | None
    body: str
    status_callback: str | None
    messaging_service_sid: str | None
    num_segments: int


def count_segments(body: str) -> int:
    """Number of SMS segments Twilio bills for ``body``.

    GSM-7 text fits 160 septets in one segment, 153 per segment once concatenated (the user
    data header takes the rest); any other character makes the whole message UCS-2: 70 UTF-16
    code units, 67 when concatenated. A unit pair (a GSM-7 escape sequence, or a UTF-16
    surrogate pair such as most emoji) is never split across two segments.
    """
    if all(c in GSM7_BASIC or c in GSM7_EXTENDED for c in body):
        costs = [2 if c in GSM7_EXTENDED else 1 for c in body]
        single, per_part = 160, 153
    else:
        costs = [2 if ord(c) > 0xFFFF else 1 for c in body]
        single, per_part = 70, 67
    if sum(costs) <= single:
        return 1
    segments, used = 1, 0
    for cost in costs:
        if used + cost > per_part:
            segments, used = segments + 1, 0
        used += cost
    return segments


def twilio_error(status: int, code: int, message: str) -> dict[str, Any]:
    """The legacy error body of the 2010-04-01 API (the SDK reads ``code`` and ``message``)."""
    return {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


class _HttpError(Exception):
    """Raised inside the handler to answer with a Twilio-style error."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class FakeTwilio:
    """A Twilio REST API fake on ``127.0.0.1``, run in a daemon thread.

    Use as ``with FakeTwilio() as fake: client = twilio_client(fake)``, or call ``start()`` and
    ``stop()``. All methods are safe to call from any thread.
    """

    def __init__(
        self,
        account_sid: str = "ACtest00000000000000000000000000",
        auth_token: str = "test-auth-token",
        on_accept: Callable[[SentMessage, float], None] | None = None,
        port: int = 0,
    ) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        # Called (from a server thread) with each accepted message and its unix time:
        # benchmarks time the moment the provider accepted an SMS with it.
        self.on_accept = on_accept
        self.port = port
        self._cond = threading.Condition()  # guards everything below
        self._messages: list[SentMessage] = []
        self._failures: list[int] = []  # HTTP statuses for the next create calls
        self.create_attempts = 0  # authenticated create calls, failed or not
        # Holding: create calls wait before accepting, so a test can crash the sender while
        # its request is in flight. Each release() ends one hold epoch.
        self._holding = False
        self._held = 0
        self._epoch = 0
        self._dropped_epochs: set[int] = set()
        # Accepted, then answered late (seconds) or not at all (None: hang up), one per call.
        self._after_accept: list[float | None] = []
        self._stopping = False
        self._created: dict[str, datetime] = {}  # sid -> when it was accepted
        self.lookups = 0  # authenticated list and fetch calls
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> FakeTwilio:
        if self._server is not None:
            raise RuntimeError("FakeTwilio is already started")
        self._stopping = False
        handler = type("Handler", (_Handler,), {"fake": self})
        # Twilio takes many connections at once: a listen backlog of 128, not
        # socketserver's 5, so workers sending several texts at a time are not reset.
        server_class = type("Server", (ThreadingHTTPServer,), {"request_queue_size": 128})
        self._server = server_class(("127.0.0.1", self.port), handler)
        # A short poll interval, because shutdown() waits for serve_forever's next poll.
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="fake-twilio",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self.release(drop=True)  # a held request must not keep a server thread waiting
        with self._cond:
            self._stopping = True  # nor must a late answer
            self._cond.notify_all()
        self._server.shutdown()  # waits for serve_forever to return
        self._server.server_close()
        assert self._thread is not None
        self._thread.join()
        self._server = self._thread = None

    def __enter__(self) -> FakeTwilio:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("FakeTwilio is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    # -- test controls -----------------------------------------------------------------------

    @property
    def messages(self) -> list[SentMessage]:
        """A snapshot of the accepted messages, oldest first."""
        with self._cond:
            return list(self._messages)

    def fail_next(self, n: int, status: int = 500) -> None:
        """Make the next ``n`` create calls (after auth) fail with ``status``."""
        with self._cond:
            self._failures.extend([status] * n)

    def answer_late(self, delay: float, n: int = 1) -> None:
        """Accept the next ``n`` messages at once, but answer only after ``delay`` seconds
        (longer than the client's timeout: the sender gives up on a message that went)."""
        with self._cond:
            self._after_accept.extend([delay] * n)

    def hang_up_after_accept(self, n: int = 1) -> None:
        """Accept the next ``n`` messages, then close the connection without an answer."""
        with self._cond:
            self._after_accept.extend([None] * n)

    def reset(self) -> None:
        with self._cond:
            self._messages.clear()
            self._failures.clear()
            self._after_accept.clear()
            self._created.clear()
            self.create_attempts = 0
            self.lookups = 0
        self.release(drop=True)

    def hold(self) -> None:
        """Make the next create calls wait, unanswered, until ``release``."""
        with self._cond:
            self._holding = True

    def release(self, drop: bool = False) -> None:
        """Let the held calls go on: accepted, or (``drop``) refused with a 503 and not
        recorded, as when the client that sent them died before the provider accepted."""
        with self._cond:
            if not self._holding and not self._held:
                return
            self._holding = False
            self._epoch += 1
            if drop:
                self._dropped_epochs.add(self._epoch)
            self._cond.notify_all()

    @property
    def held(self) -> int:
        """How many create calls are waiting in a hold right now."""
        with self._cond:
            return self._held

    def wait_held(self, count: int = 1, timeout: float = 5.0) -> None:
        """Block until at least ``count`` create calls are waiting in a hold."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._held >= count, timeout):
                raise TimeoutError(
                    f"FakeTwilio: {self._held} of {count} calls held after {timeout}s"
                )

    def wait_for(self, count: int, timeout: float = 5.0) -> list[SentMessage]:
        """Block until at least ``count`` messages were accepted; raise TimeoutError otherwise."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self._messages) >= count, timeout):
                raise TimeoutError(
                    f"FakeTwilio: {len(self._messages)} of {count} messages after {timeout}s"
                )
            return list(self._messages)

    # -- request handling (called from server threads) ---------------------------------------

    def _create_message(
        self, account_sid: str, form: dict[str, str]
    ) -> tuple[dict[str, Any], float | None]:
        """The created resource, and when to answer: after this many seconds (0: at once),
        or never (None: hang up)."""
        with self._cond:
            self.create_attempts += 1
            if self._holding:
                epoch = self._epoch
                self._held += 1
                self._cond.notify_all()
                self._cond.wait_for(lambda: self._epoch > epoch)
                self._held -= 1
                if epoch + 1 in self._dropped_epochs:
                    raise _HttpError(503, 20503, "Held request dropped")
            if self._failures:
                status = self._failures.pop(0)
                raise _HttpError(status, 20000 + status, _phrase(status))

        to = form.get("To", "")
        from_ = form.get("From") or None
        body = form.get("Body", "")
        service_sid = form.get("MessagingServiceSid") or None
        if not to:
            raise _HttpError(400, 21604, "A 'To' phone number is required.")
        if not E164.match(to):
            raise _HttpError(400, 21211, f"Invalid 'To' Phone Number: {to}")
        if from_ is None and service_sid is None:
            raise _HttpError(400, 21603, "A 'From' phone number is required.")
        if not body:
            raise _HttpError(400, 21602, "Message body is required.")
        if len(body) > MAX_BODY_CHARS:
            raise _HttpError(
                400, 21617, "The concatenated message body exceeds the 1600 character limit."
            )

        sid = "SM" + secrets.token_hex(16)
        segments = count_segments(body)
        created = datetime.now(UTC)
        sent = SentMessage(
            sid=sid,
            to=to,
            from_=from_,
            body=body,
            status_callback=form.get("StatusCallback") or None,
            messaging_service_sid=service_sid,
            num_segments=segments,
        )
        with self._cond:
            self._messages.append(sent)
            self._created[sid] = created
            after = self._after_accept.pop(0) if self._after_accept else 0.0
            self._cond.notify_all()
        if self.on_accept is not None:
            self.on_accept(sent, time.time())
        return _resource(account_sid, sent, created, listed=False), after

    def _wait_late(self, delay: float) -> None:
        """Sit on an accepted message's answer for ``delay`` seconds (less if stopped)."""
        with self._cond:
            self._cond.wait_for(lambda: self._stopping, timeout=delay)

    def _list_messages(self, account_sid: str, query: dict[str, str]) -> dict[str, Any]:
        """The Messages list: newest first, filtered like Twilio's (``To``, ``From``, and
        ``DateSent`` on a UTC date, with ``<``/``>`` for on-or-before/on-or-after)."""
        with self._cond:
            self.lookups += 1
            rows = [(m, self._created[m["sid"]]) for m in self._messages]
        rows.reverse()
        if query.get("To"):
            rows = [(m, c) for m, c in rows if m["to"] == query["To"]]
        if query.get("From"):
            rows = [(m, c) for m, c in rows if m["from_"] == query["From"]]
        for key, keep in (
            ("DateSent", lambda day, on: day == on),
            ("DateSent<", lambda day, on: day <= on),
            ("DateSent>", lambda day, on: day >= on),
        ):
            if query.get(key):
                on = _utc_date(query[key])
                rows = [(m, c) for m, c in rows if keep(c.date(), on)]
        size = max(1, min(int(query.get("PageSize") or 50), 1000))
        page = int(query.get("Page") or 0)
        chunk = rows[page * size : (page + 1) * size]
        base = f"/{API_VERSION}/Accounts/{account_sid}/Messages.json"
        filters = {k: v for k, v in query.items() if k in ("To", "From") or k.startswith("Date")}

        def page_uri(n: int) -> str:
            return f"{base}?{urlencode({**filters, 'PageSize': size, 'Page': n})}"

        more = (page + 1) * size < len(rows)
        return {
            "messages": [_resource(account_sid, m, c, listed=True) for m, c in chunk],
            "end": page * size + max(len(chunk) - 1, 0),
            "first_page_uri": page_uri(0),
            "next_page_uri": page_uri(page + 1) if more else None,
            "page": page,
            "page_size": size,
            "previous_page_uri": page_uri(page - 1) if page else None,
            "start": page * size,
            "uri": page_uri(page),
        }

    def _fetch_message(self, account_sid: str, sid: str) -> dict[str, Any]:
        with self._cond:
            self.lookups += 1
            found = [(m, self._created[sid]) for m in self._messages if m["sid"] == sid]
        if not found:
            raise _HttpError(404, 20404, f"The requested resource {sid} was not found")
        return _resource(account_sid, *found[0], listed=True)


def _utc_date(value: str):
    """A DateSent filter value: ``YYYY-MM-DD``, or an ISO date-time as the SDK sends it."""
    return datetime.fromisoformat(value[:10]).date()


def _resource(
    account_sid: str, sent: SentMessage, created: datetime, listed: bool
) -> dict[str, Any]:
    """A Message resource as Twilio shows it. Just created it is ``queued``; listed later,
    the fake has handed it to the carrier (``sent``, with a DateSent)."""
    stamp = format_datetime(created)  # RFC 2822, as Twilio sends dates
    uri = f"/{API_VERSION}/Accounts/{account_sid}/Messages/{sent['sid']}"
    return {
        "account_sid": account_sid,
        "api_version": API_VERSION,
        "body": sent["body"],
        "date_created": stamp,
        "date_sent": stamp if listed else None,
        "date_updated": stamp,
        "direction": "outbound-api",
        "error_code": None,
        "error_message": None,
        "from": sent["from_"],
        "messaging_service_sid": sent["messaging_service_sid"],
        "num_media": "0",
        "num_segments": str(sent["num_segments"]),  # Twilio sends counts as strings
        "price": None,
        "price_unit": "USD",
        "sid": sent["sid"],
        "status": "sent" if listed else "queued",
        "subresource_uris": {"media": f"{uri}/Media.json"},
        "to": sent["to"],
        "uri": f"{uri}.json",
    }


class _Handler(BaseHTTPRequestHandler):
    fake: FakeTwilio  # set on the per-server subclass made by FakeTwilio.start()

    def do_POST(self) -> None:
        self._handle()

    def do_GET(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""  # always drain the request body
        try:
            self._check_auth()
            url = urlsplit(self.path)
            many, one = MESSAGES_PATH.match(url.path), MESSAGE_PATH.match(url.path)
            match = many or one
            # Another account's messages are "not found", like any path we do not serve.
            if not match or match["account"] != self.fake.account_sid:
                raise _HttpError(404, 20404, f"The requested resource {url.path} was not found")
            if self.command == "GET":
                if many:
                    query = {k: v[-1] for k, v in parse_qs(url.query).items()}
                    self._reply(200, self.fake._list_messages(match["account"], query))
                else:
                    self._reply(200, self.fake._fetch_message(match["account"], match["sid"]))
                return
            if self.command != "POST" or not many:
                raise _HttpError(404, 20404, f"The requested resource {url.path} was not found")
            # The SDK form-encodes as UTF-8; repeated keys (MediaUrl) keep their last value.
            form = {k: v[-1] for k, v in parse_qs(raw.decode(), keep_blank_values=True).items()}
            created, after = self.fake._create_message(match["account"], form)
            if after is None:
                self._hang_up()
                return
            if after:
                self.fake._wait_late(after)
            self._reply(201, created)
        except _HttpError as e:
            self._reply(e.status, twilio_error(e.status, e.code, e.message))

    def _hang_up(self) -> None:
        """Close the connection with no answer at all, as a dropped link would."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _check_auth(self) -> None:
        scheme, _, encoded = (self.headers.get("Authorization") or "").partition(" ")
        try:
            user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            user = password = ""
        if scheme.lower() != "basic" or (user, password) != (
            self.fake.account_sid,
            self.fake.auth_token,
        ):
            raise _HttpError(401, 20003, "Authenticate")

    def _reply(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        try:
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the sender is gone (a killed worker): nothing to answer

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output quiet


def twilio_client(fake: FakeTwilio, *, timeout: float = 10.0) -> Client:
    """A real ``twilio.rest.Client`` whose Api-domain calls go to ``fake`` (see module doc).

    Close it with ``client.http_client.session.close()`` when done.
    """
    client = Client(
        fake.account_sid, fake.auth_token, http_client=TwilioHttpClient(timeout=timeout)
    )
    client.edge = client.region = None  # else get_hostname() rewrites the host (module doc)
    client.api.base_url = fake.base_url
    return client
