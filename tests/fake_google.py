"""A fake Google OAuth2 and Calendar v3 server on loopback, for tests and the benchmark.

The real clients (``google-auth-oauthlib``'s ``Flow``, ``google-auth``'s ``Credentials``
and ``AuthorizedSession``) reach it through the endpoints the app is configured with
(``GOOGLE_OAUTH_BASE_URL``, ``GOOGLE_CALENDAR_BASE_URL``). It serves:

* ``GET /auth``: the consent page, answered at once with a redirect to ``redirect_uri``
  carrying a code and the state (as if the user clicked Allow);
* ``POST /token``: ``authorization_code`` (checks the client, redirect URI and PKCE
  verifier) and ``refresh_token`` grants, ``invalid_grant`` once a grant is revoked;
* ``POST /revoke``;
* ``GET /calendar/v3/calendars/<id>/events``: ``timeMin``/``timeMax`` windows with
  ``singleEvents`` expansion of daily-repeating events (instance ids ``<id>_<UTC time>``,
  as Google forms them), paging, ``nextSyncToken``; ``syncToken`` answers only what
  changed since (cancelled events included) and 410 once tokens are expired; a switch
  answers 500 instead.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import secrets
import threading
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

CLIENT_ID = "test-client.apps.googleusercontent.com"
CLIENT_SECRET = "test-client-secret"


@dataclass
class Event:
    id: str
    start: datetime | date
    end: datetime | date
    status: str = "confirmed"
    transparency: str | None = None
    declined: bool = False  # the calendar's owner declined it
    repeat_daily: int = 1  # >1: a recurring event of that many daily instances
    seq: int = 0  # change number of its last change

    def instances(self) -> list[dict]:
        body = {"status": self.status, "kind": "calendar#event"}
        if self.transparency:
            body["transparency"] = self.transparency
        body["attendees"] = [
            {
                "email": "owner@example.com",
                "self": True,
                "responseStatus": "declined" if self.declined else "accepted",
            },
            {"email": "guest@example.com", "responseStatus": "accepted"},
        ]
        if self.repeat_daily == 1:
            return [{"id": self.id, **body, **_times(self.start, self.end)}]
        out = []
        for n in range(self.repeat_daily):
            start, end = self.start + timedelta(days=n), self.end + timedelta(days=n)
            stamp = (
                start.strftime("%Y%m%d")
                if not isinstance(start, datetime)
                else (start.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ"))
            )
            out.append(
                {
                    "id": f"{self.id}_{stamp}",
                    "recurringEventId": self.id,
                    **body,
                    **_times(start, end),
                }
            )
        return out


def _times(start, end) -> dict:
    if isinstance(start, datetime):
        return {"start": {"dateTime": start.isoformat()}, "end": {"dateTime": end.isoformat()}}
    return {"start": {"date": start.isoformat()}, "end": {"date": end.isoformat()}}


def _bounds(item: dict, zone_offset=UTC) -> tuple[datetime, datetime]:
    def parse(value):
        if "dateTime" in value:
            return datetime.fromisoformat(value["dateTime"])
        return datetime.fromisoformat(value["date"]).replace(tzinfo=zone_offset)

    return parse(item["start"]), parse(item["end"])


@dataclass
class FakeGoogle:
    time_zone: str = "Europe/London"
    page_size: int = 250
    events: dict[str, Event] = field(default_factory=dict)
    codes: dict[str, dict] = field(default_factory=dict)
    refresh_tokens: dict[str, bool] = field(default_factory=dict)  # token -> still valid
    access_tokens: set[str] = field(default_factory=set)
    revoked: list[str] = field(default_factory=list)
    requests: list[tuple[str, str, dict]] = field(default_factory=list)  # method, path, params
    fail_status: int | None = None  # answer the Calendar API with this status
    sync_floor: int = 0  # sync tokens below this are expired (410)
    _seq: itertools.count = field(default_factory=lambda: itertools.count(1))
    seq: int = 0

    # ------------------------------------------------------------ test controls

    def put(self, event_id: str, start, end, **extra) -> Event:
        self.seq = next(self._seq)
        event = Event(event_id, start, end, seq=self.seq, **extra)
        self.events[event_id] = event
        return event

    def delete(self, event_id: str) -> None:
        self.seq = next(self._seq)
        event = self.events[event_id]
        event.status, event.seq = "cancelled", self.seq

    def revoke_all(self) -> None:
        for token in self.refresh_tokens:
            self.refresh_tokens[token] = False

    def expire_sync_tokens(self) -> None:
        self.sync_floor = self.seq + 1

    def calendar_calls(self) -> list[dict]:
        return [p for m, path, p in self.requests if path.startswith("/calendar/")]

    # ------------------------------------------------------------ the server

    def __enter__(self) -> FakeGoogle:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, *args):  # quiet
                pass

            def _answer(self, status: int, body=None, headers=None):
                data = json.dumps(body).encode() if body is not None else b""
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                if body is not None:
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                parts = urlsplit(self.path)
                params = {k: v[0] for k, v in parse_qs(parts.query).items()}
                fake.requests.append(("GET", parts.path, params))
                if parts.path == "/auth":
                    return self._answer(302, headers={"Location": fake.consent(params)})
                if parts.path.startswith("/calendar/v3/calendars/") and parts.path.endswith(
                    "/events"
                ):
                    token = self.headers.get("Authorization", "").removeprefix("Bearer ")
                    status, body = fake.list_events(token, params)
                    return self._answer(status, body)
                return self._answer(404, {"error": "not_found"})

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                path = urlsplit(self.path).path
                fake.requests.append(("POST", path, form))
                if path == "/token":
                    status, body = fake.token(form, self.headers.get("Authorization"))
                    return self._answer(status, body)
                if path == "/revoke":
                    token = form.get("token", "")
                    if token in fake.refresh_tokens:
                        fake.refresh_tokens[token] = False
                        fake.revoked.append(token)
                        return self._answer(200, {})
                    return self._answer(400, {"error": "invalid_token"})
                return self._answer(404, {"error": "not_found"})

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    # ------------------------------------------------------------ OAuth

    def consent(self, params: dict) -> str:
        code = secrets.token_urlsafe(16)
        self.codes[code] = params
        query = urlencode(
            {"code": code, "state": params.get("state", ""), "scope": params.get("scope", "")}
        )
        return f"{params['redirect_uri']}?{query}"

    def token(self, form: dict, basic: str | None) -> tuple[int, dict]:
        client_id, client_secret = form.get("client_id"), form.get("client_secret")
        if basic and basic.startswith("Basic "):
            decoded = base64.b64decode(basic[6:]).decode()
            client_id, _, client_secret = (unquote(p) for p in decoded.partition(":"))
        if (client_id, client_secret) != (CLIENT_ID, CLIENT_SECRET):
            return 401, {"error": "invalid_client"}
        grant = form.get("grant_type")
        if grant == "authorization_code":
            asked = self.codes.pop(form.get("code", ""), None)
            if asked is None or asked.get("redirect_uri") != form.get("redirect_uri"):
                return 400, {"error": "invalid_grant", "error_description": "Bad code."}
            verifier = form.get("code_verifier", "")
            challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
            if challenge.decode().rstrip("=") != asked.get("code_challenge"):
                return 400, {"error": "invalid_grant", "error_description": "PKCE mismatch."}
            refresh = "1//" + secrets.token_urlsafe(24)
            self.refresh_tokens[refresh] = True
            return 200, self._access(asked.get("scope", ""), refresh)
        if grant == "refresh_token":
            if not self.refresh_tokens.get(form.get("refresh_token", "")):
                return 400, {
                    "error": "invalid_grant",
                    "error_description": "Token has been expired or revoked.",
                }
            return 200, self._access(form.get("scope", ""))
        return 400, {"error": "unsupported_grant_type"}

    def _access(self, scope: str, refresh: str | None = None) -> dict:
        access = "ya29." + secrets.token_urlsafe(16)
        self.access_tokens.add(access)
        body = {"access_token": access, "expires_in": 3599, "token_type": "Bearer", "scope": scope}
        if refresh:
            body["refresh_token"] = refresh
        return body

    # ------------------------------------------------------------ Calendar

    def list_events(self, token: str, params: dict) -> tuple[int, dict]:
        if token not in self.access_tokens:
            return 401, {"error": {"code": 401, "message": "Invalid Credentials"}}
        if self.fail_status:
            return self.fail_status, {
                "error": {
                    "code": self.fail_status,
                    "message": "Backend Error",
                    "errors": [{"reason": "backendError"}],
                }
            }
        if "syncToken" in params:
            since = int(params["syncToken"].removeprefix("sync-"))
            if since < self.sync_floor:
                return 410, {
                    "error": {
                        "code": 410,
                        "message": "Sync token is no longer valid",
                        "errors": [{"reason": "fullSyncRequired"}],
                    }
                }
            changed = [e for e in self.events.values() if e.seq > since]
            items = []
            for event in changed:
                if event.status == "cancelled" and event.repeat_daily > 1:
                    items.append({"id": event.id, "status": "cancelled"})
                else:
                    items += event.instances()
        else:
            lo = datetime.fromisoformat(params["timeMin"])
            hi = datetime.fromisoformat(params["timeMax"])
            items = [
                item
                for event in self.events.values()
                if event.status != "cancelled"
                for item in event.instances()
                if _bounds(item)[1] > lo and _bounds(item)[0] < hi
            ]
        size = min(int(params.get("maxResults", 250)), self.page_size)
        offset = int(params.get("pageToken", "0"))
        page = items[offset : offset + size]
        body = {"kind": "calendar#events", "timeZone": self.time_zone, "items": page}
        if offset + size < len(items):
            body["nextPageToken"] = str(offset + size)
        else:
            body["nextSyncToken"] = f"sync-{self.seq}"
        return 200, body
