"""iCal (ICS) feeds: a secret URL fetched with limits and parsed into busy intervals.

The URL is a secret (anyone holding it reads the whole calendar), so it is stored
encrypted, and fetching it is guarded: http(s) only (``webcal://`` is Apple's and
Google's name for https), a size cap, a total deadline (requests' timeout is per read,
so a server trickling bytes could otherwise hold the job), at most three redirects,
each re-checked, and no private, loopback or link-local addresses, so an owner cannot
point the worker at the shop's own network.
"""

from __future__ import annotations

import hashlib
import ipaddress
import socket
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from urllib.parse import urljoin, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import icalendar
import recurring_ical_events
import requests

MAX_BYTES = 5 * 1024 * 1024  # a busy personal calendar for years is well under 1 MB
TIMEOUT = 10.0  # seconds for the whole fetch
MAX_REDIRECTS = 3


class FeedError(Exception):
    """The feed cannot be used as it is (bad URL, too large, not a calendar): the owner
    must fix it. The message is plain words for the resource's page."""


class FeedUnavailable(Exception):
    """A passing failure (timeout, network, 5xx): keep the blocks, retry later."""


@dataclass(frozen=True)
class FeedOptions:
    max_bytes: int = MAX_BYTES
    timeout: float = TIMEOUT
    allow_private: bool = False  # tests serve feeds from 127.0.0.1


def normalize_url(url: str) -> str:
    """The URL to store, or ``FeedError``: only http and https (webcal means https)."""
    url = (url or "").strip()
    if url.lower().startswith("webcal://"):
        url = "https://" + url[len("webcal://") :]
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise FeedError("The calendar address must be an http:// or https:// URL.")
    if len(url) > 2000:
        raise FeedError("The calendar address is too long.")
    return url


def _check_host(url: str, allow_private: bool) -> None:
    if allow_private:
        return
    parts = urlsplit(url)
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or 443, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise FeedUnavailable(f"The host {parts.hostname} could not be found.") from None
    for info in infos:
        if not ipaddress.ip_address(info[4][0].split("%")[0]).is_global:
            raise FeedError("The calendar address points at a private network address.")


def fetch(url: str, options: FeedOptions = FeedOptions()) -> bytes:
    """The feed's bytes, within the size cap and deadline."""
    deadline = time.monotonic() + options.timeout
    for _ in range(MAX_REDIRECTS + 1):
        url = normalize_url(url)
        _check_host(url, options.allow_private)
        remaining = max(deadline - time.monotonic(), 0.1)
        try:
            answer = requests.get(
                url,
                timeout=(min(remaining, 5.0), remaining),
                stream=True,
                allow_redirects=False,
                headers={"Accept": "text/calendar, */*;q=0.5"},
            )
        except requests.Timeout:
            raise FeedUnavailable("The calendar feed did not answer in time; will retry.") from None
        except requests.RequestException:
            raise FeedUnavailable("The calendar feed could not be reached; will retry.") from None
        with answer:
            if answer.is_redirect:
                url = urljoin(url, answer.headers.get("Location", ""))
                continue
            if answer.status_code >= 500 or answer.status_code == 429:
                raise FeedUnavailable(
                    f"The calendar feed answered {answer.status_code}; will retry."
                )
            if answer.status_code >= 400:
                raise FeedError(
                    f"The calendar feed answered {answer.status_code}: check the address."
                )
            return _read_capped(answer, options.max_bytes, deadline)
    raise FeedError("The calendar feed redirects too many times.")


def _read_capped(answer: requests.Response, max_bytes: int, deadline: float) -> bytes:
    declared = answer.headers.get("Content-Length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise FeedError(f"The calendar feed is larger than {max_bytes // 1024} KB.")
    chunks: list[bytes] = []
    size = 0
    try:
        for chunk in answer.iter_content(64 * 1024):
            size += len(chunk)
            if size > max_bytes:
                raise FeedError(f"The calendar feed is larger than {max_bytes // 1024} KB.")
            if time.monotonic() > deadline:
                raise FeedUnavailable("The calendar feed took too long to send; will retry.")
            chunks.append(chunk)
    except requests.RequestException:
        raise FeedUnavailable("The calendar feed stopped half way; will retry.") from None
    return b"".join(chunks)


# ---------------------------------------------------------------- parsing


@dataclass(frozen=True)
class FeedEvent:
    external_id: str
    starts_at: datetime
    ends_at: datetime
    busy: bool
    recurrence: datetime | None = None


def _zone(name: str | None, fallback: ZoneInfo) -> ZoneInfo:
    try:
        return ZoneInfo(str(name)) if name else fallback
    except (ZoneInfoNotFoundError, ValueError):
        return fallback


def _instant(value, zone: ZoneInfo) -> datetime:
    """An aware UTC datetime: a date is midnight in the calendar's zone, a floating time
    is read in that zone too (RFC 5545)."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=zone)
        return value.astimezone(UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=zone).astimezone(UTC)
    raise ValueError(f"not a time: {value!r}")


def _external_id(uid: str, recurrence: datetime | None) -> str:
    key = uid if recurrence is None else f"{uid}#{recurrence.isoformat()}"
    if len(key) <= 200:
        return key
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()  # fits the 255 column


def _owner_declined(component, owners: set[str]) -> bool:
    attendees = component.get("ATTENDEE") or []
    if not isinstance(attendees, list):
        attendees = [attendees]
    for attendee in attendees:
        email = str(attendee).lower().removeprefix("mailto:")
        if email in owners and str(attendee.params.get("PARTSTAT", "")).upper() == "DECLINED":
            return True
    return False


def parse(
    data: bytes, window_start: datetime, window_end: datetime, default_zone: str
) -> tuple[list[FeedEvent], str]:
    """Every event occurrence overlapping the window, recurrences expanded, with its busy
    verdict; and the calendar's time zone.

    Busy follows Google's rules: not cancelled, not transparent (free), not declined by
    the owner. A Google feed names its owner in ``X-WR-CALNAME`` (the calendar's email);
    that is the only owner an ICS feed can tell us about."""
    try:
        calendar = icalendar.Calendar.from_ical(data)
    except ValueError:
        raise FeedError("The address did not return an iCal calendar.") from None
    zone = _zone(calendar.get("X-WR-TIMEZONE"), _zone(default_zone, ZoneInfo("UTC")))
    owner = str(calendar.get("X-WR-CALNAME", "")).strip().lower()
    owners = {owner} if "@" in owner else set()
    try:
        occurrences = recurring_ical_events.of(calendar).between(
            window_start - timedelta(days=1), window_end + timedelta(days=1)
        )
    except Exception as exc:  # the library raises many kinds on malformed rules
        raise FeedError(f"The calendar feed could not be read ({type(exc).__name__}).") from None
    events: list[FeedEvent] = []
    for component in occurrences:
        if component.name != "VEVENT" or "DTSTART" not in component:
            continue
        starts_at = _instant(component.decoded("DTSTART"), zone)
        if "DTEND" in component:
            ends_at = _instant(component.decoded("DTEND"), zone)
        elif "DURATION" in component:
            ends_at = starts_at + component.decoded("DURATION")
        elif not isinstance(component.decoded("DTSTART"), datetime):
            ends_at = starts_at + timedelta(days=1)  # an all-day event with no end
        else:
            continue  # a moment, not a span: blocks nothing
        if ends_at <= starts_at or ends_at <= window_start or starts_at >= window_end:
            continue
        rid = component.get("RECURRENCE-ID")
        recurrence = _instant(rid.dt, zone) if rid is not None else None
        uid = str(component.get("UID") or f"nouid-{starts_at.isoformat()}")
        busy = not (
            str(component.get("STATUS", "")).upper() == "CANCELLED"
            or str(component.get("TRANSP", "")).upper() == "TRANSPARENT"
            or _owner_declined(component, owners)
        )
        events.append(FeedEvent(uid, starts_at, ends_at, busy, recurrence))
    # The library gives every occurrence a RECURRENCE-ID, single events too: keep it only
    # where a UID occurs more than once, so a moved single event is updated in place.
    counts = Counter(e.external_id for e in events)
    return [
        FeedEvent(
            _external_id(e.external_id, e.recurrence if counts[e.external_id] > 1 else None),
            e.starts_at,
            e.ends_at,
            e.busy,
        )
        for e in events
    ], str(zone)
