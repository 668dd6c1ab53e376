"""Google Calendar over plain HTTP: OAuth2 (authorization code, refresh, revoke) and
Calendar v3 ``events.list``.

Why these libraries: ``google-auth-oauthlib``'s ``Flow`` builds the consent URL (with
PKCE) and exchanges the code; ``google-auth``'s ``Credentials`` refreshes the access
token and ``AuthorizedSession`` (requests) attaches it and refreshes again on a 401.
Both are Google's own and take their endpoints from us, so tests point them at a fake
server on 127.0.0.1. ``google-api-python-client`` is not used: it builds its client from
a discovery document fetched at run time, which is one more moving part for a single
REST call.

Every failure is sorted into what the caller does next: ``GrantRevoked`` (the owner must
reconnect), ``SyncTokenExpired`` (410: sync everything again), ``ProviderUnavailable``
(network, 429 or 5xx: keep the blocks, retry later) and ``ProviderRefused`` (any other
answer: record it and stop).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import quote

import requests
from google.auth.exceptions import RefreshError, TransportError
from google.auth.transport.requests import AuthorizedSession
from google.oauth2.credentials import Credentials
from google_auth_oauthlib.flow import Flow
from oauthlib.oauth2.rfc6749.errors import OAuth2Error

# events.readonly is enough to read busy times; cal.com asks for calendar.readonly and
# calendar.events (write): we never write, so we never ask.
SCOPES = ("https://www.googleapis.com/auth/calendar.events.readonly",)
AUTH_URI = "https://accounts.google.com/o/oauth2/v2/auth"
TOKEN_URI = "https://oauth2.googleapis.com/token"  # noqa: S105 (a URL, not a secret)
REVOKE_URI = "https://oauth2.googleapis.com/revoke"
CALENDAR_URI = "https://www.googleapis.com/calendar/v3"
TIMEOUT = 15  # seconds per HTTP call; a job has its own, longer, limit
PAGE_SIZE = 2500  # events.list's maximum: a 60-day window is one or two pages
# Only what the busy rules read: smaller pages, and no titles or descriptions held here.
FIELDS = (
    "nextPageToken,nextSyncToken,timeZone,"
    "items(id,status,start,end,transparency,eventType,attendees(self,responseStatus))"
)


class GoogleError(Exception):
    """Base: the message is plain words for the resource's page."""


class GrantRevoked(GoogleError):
    pass


class SyncTokenExpired(GoogleError):
    pass


class ProviderUnavailable(GoogleError):
    pass


class ProviderRefused(GoogleError):
    pass


@dataclass(frozen=True)
class GoogleSettings:
    client_id: str
    client_secret: str
    auth_uri: str = AUTH_URI
    token_uri: str = TOKEN_URI
    revoke_uri: str = REVOKE_URI
    calendar_uri: str = CALENDAR_URI

    def client_config(self, redirect_uri: str) -> dict:
        return {
            "web": {
                "client_id": self.client_id,
                "client_secret": self.client_secret,
                "auth_uri": self.auth_uri,
                "token_uri": self.token_uri,
                "redirect_uris": [redirect_uri],
            }
        }


def settings_from_config(config: Mapping) -> GoogleSettings | None:
    """None unless a client id, its secret and an encryption key are all configured."""
    if not (
        config.get("GOOGLE_CLIENT_ID")
        and config.get("GOOGLE_CLIENT_SECRET")
        and config.get("CALENDAR_TOKEN_KEYS")
    ):
        return None
    extra = {}
    if base := (config.get("GOOGLE_OAUTH_BASE_URL") or "").rstrip("/"):
        extra.update(
            auth_uri=f"{base}/auth", token_uri=f"{base}/token", revoke_uri=f"{base}/revoke"
        )
    if base := (config.get("GOOGLE_CALENDAR_BASE_URL") or "").rstrip("/"):
        extra["calendar_uri"] = f"{base}/calendar/v3"
    return GoogleSettings(config["GOOGLE_CLIENT_ID"], config["GOOGLE_CLIENT_SECRET"], **extra)


# ---------------------------------------------------------------- OAuth2


def _flow(settings: GoogleSettings, redirect_uri: str, code_verifier: str | None = None) -> Flow:
    return Flow.from_client_config(
        settings.client_config(redirect_uri),
        scopes=list(SCOPES),
        redirect_uri=redirect_uri,
        code_verifier=code_verifier,
        autogenerate_code_verifier=code_verifier is None,
    )


def authorization_url(settings: GoogleSettings, redirect_uri: str, state: str) -> tuple[str, str]:
    """The consent page's URL and the PKCE code verifier to keep for the callback.

    ``access_type=offline`` asks for a refresh token; ``prompt=consent`` makes Google send
    one again on a reconnect (it only sends it on the first consent otherwise)."""
    flow = _flow(settings, redirect_uri)
    url, _ = flow.authorization_url(
        state=state, access_type="offline", prompt="consent", include_granted_scopes="false"
    )
    return url, flow.code_verifier


def exchange_code(
    settings: GoogleSettings, redirect_uri: str, code: str, code_verifier: str
) -> str:
    """Trade the callback's code for a refresh token."""
    flow = _flow(settings, redirect_uri, code_verifier)
    try:
        token = flow.fetch_token(code=code, timeout=TIMEOUT)
    except OAuth2Error as exc:
        raise ProviderRefused(f"Google refused the sign-in ({exc.error}).") from None
    except requests.RequestException:
        raise ProviderUnavailable("Google could not be reached; try again.") from None
    refresh_token = token.get("refresh_token")
    if not refresh_token:
        raise ProviderRefused("Google sent no refresh token; connect again.")
    missing = set(SCOPES) - set(token.get("scope") or SCOPES)
    if missing:
        raise ProviderRefused("Calendar access was not granted; tick it when connecting.")
    return refresh_token


def revoke(settings: GoogleSettings, refresh_token: str) -> bool:
    """Revoke the grant at Google; False if Google could not be reached (the caller
    deletes the token anyway). An already revoked token answers 400: that is done too."""
    try:
        answer = requests.post(
            settings.revoke_uri,
            data={"token": refresh_token},
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            timeout=TIMEOUT,
        )
    except requests.RequestException:
        return False
    return answer.status_code < 500


# ---------------------------------------------------------------- events.list


@dataclass(frozen=True)
class EventPage:
    items: list[dict]
    time_zone: str | None
    next_sync_token: str | None


def _session(settings: GoogleSettings, refresh_token: str) -> AuthorizedSession:
    credentials = Credentials(
        token=None,
        refresh_token=refresh_token,
        token_uri=settings.token_uri,
        client_id=settings.client_id,
        client_secret=settings.client_secret,
        scopes=list(SCOPES),
    )
    return AuthorizedSession(credentials)


def _refresh_failure(exc: RefreshError) -> GoogleError:
    details = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], Mapping) else {}
    if details.get("error") == "invalid_grant" or "invalid_grant" in str(exc):
        return GrantRevoked(
            "Google no longer accepts this connection (access was revoked or expired): "
            "reconnect the calendar."
        )
    if exc.retryable:
        return ProviderUnavailable("Google's sign-in service is unavailable; will retry.")
    return ProviderRefused(f"Google refused the stored sign-in: {exc.args[0]}")


def list_events(
    settings: GoogleSettings,
    refresh_token: str,
    calendar_id: str,
    *,
    sync_token: str | None = None,
    time_min: datetime | None = None,
    time_max: datetime | None = None,
) -> Iterator[EventPage]:
    """Pages of ``events.list``: changes since ``sync_token``, or every event in
    [time_min, time_max). Recurring events come expanded (``singleEvents``); the last
    page carries the next sync token when Google gives one."""
    params: dict[str, str] = {
        "singleEvents": "true",
        "maxResults": str(PAGE_SIZE),
        "fields": FIELDS,
    }
    if sync_token:
        params["syncToken"] = sync_token  # Google refuses timeMin/timeMax with it
    else:
        params.update(
            timeMin=time_min.isoformat(), timeMax=time_max.isoformat(), showDeleted="false"
        )
    url = f"{settings.calendar_uri}/calendars/{quote(calendar_id, safe='')}/events"
    http = _session(settings, refresh_token)
    try:
        while True:
            try:
                answer = http.get(url, params=params, timeout=TIMEOUT)
            except RefreshError as exc:
                raise _refresh_failure(exc) from None
            except (requests.RequestException, TransportError):
                raise ProviderUnavailable(
                    "Google Calendar could not be reached; will retry."
                ) from None
            _raise_for(answer)
            body = answer.json()
            page = EventPage(body.get("items", []), body.get("timeZone"), body.get("nextSyncToken"))
            yield page
            if not body.get("nextPageToken"):
                return
            params["pageToken"] = body["nextPageToken"]
    finally:
        http.close()


def _raise_for(answer: requests.Response) -> None:
    status = answer.status_code
    if status < 400:
        return
    if status == 410:
        raise SyncTokenExpired("Google asked for a full sync.")
    reason = _reason(answer)
    if status == 429 or status >= 500 or reason in ("rateLimitExceeded", "userRateLimitExceeded"):
        raise ProviderUnavailable(f"Google Calendar answered {status}; will retry.")
    if status == 401:
        raise GrantRevoked("Google no longer accepts this connection: reconnect the calendar.")
    if status == 404:
        raise ProviderRefused("Google says the calendar no longer exists: reconnect it.")
    raise ProviderRefused(f"Google Calendar refused the request ({status} {reason or ''}).".strip())


def _reason(answer: requests.Response) -> str | None:
    try:
        errors = answer.json()["error"]["errors"]
        return errors[0].get("reason")
    except (ValueError, KeyError, IndexError, TypeError):
        return None
