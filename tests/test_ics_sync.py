"""iCal feeds served by a local HTTP server: the same busy rules and upsert as Google,
and the fetch's guards (scheme, size, time, private addresses)."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select

from recovery.availability.calendars import ics
from recovery.availability.calendars.secrets import SecretBox
from recovery.availability.calendars.sync import Providers, sync_connection
from recovery.models import BusyBlock, CalendarConnection
from tests import factories as f

KEY = Fernet.generate_key().decode()
NOW = datetime(2026, 1, 12, 9, 0, tzinfo=UTC)

FEED = """BEGIN:VCALENDAR
VERSION:2.0
X-WR-CALNAME:sam@example.com
X-WR-TIMEZONE:Europe/Paris
BEGIN:VEVENT
UID:plain
DTSTART:20260112T120000Z
DTEND:20260112T130000Z
END:VEVENT
BEGIN:VEVENT
UID:daily
DTSTART;TZID=Europe/Paris:20260113T100000
DTEND;TZID=Europe/Paris:20260113T110000
RRULE:FREQ=DAILY;COUNT=3
END:VEVENT
BEGIN:VEVENT
UID:allday
DTSTART;VALUE=DATE:20260120
DTEND;VALUE=DATE:20260121
END:VEVENT
BEGIN:VEVENT
UID:free
DTSTART:20260114T120000Z
DTEND:20260114T130000Z
TRANSP:TRANSPARENT
END:VEVENT
BEGIN:VEVENT
UID:cancelled
DTSTART:20260114T140000Z
DTEND:20260114T150000Z
STATUS:CANCELLED
END:VEVENT
BEGIN:VEVENT
UID:declined
DTSTART:20260114T160000Z
DTEND:20260114T170000Z
ATTENDEE;PARTSTAT=DECLINED:mailto:sam@example.com
END:VEVENT
END:VCALENDAR
"""


class Feed:
    """A tiny HTTP server whose answer the test sets."""

    def __init__(self) -> None:
        self.body, self.status, self.delay = FEED.encode(), 200, 0.0
        feed = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, *args):
                pass

            def do_GET(self):
                time.sleep(feed.delay)
                self.send_response(feed.status)
                self.send_header("Content-Type", "text/calendar")
                self.end_headers()
                self.wfile.write(feed.body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/basic.ics"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def feed():
    server = Feed()
    yield server
    server.close()


PROVIDERS = Providers(SecretBox([KEY]), None, ics.FeedOptions(allow_private=True))


def connected(session, url) -> CalendarConnection:
    shop = f.shop(session)
    chair = f.resource(session, shop)
    conn = CalendarConnection(
        shop_id=shop.id, resource_id=chair.id, provider="ics", secret=SecretBox([KEY]).encrypt(url)
    )
    session.add(conn)
    session.flush()
    return conn


def blocks(session, conn):
    rows = session.scalars(select(BusyBlock).where(BusyBlock.connection_id == conn.id))
    return {b.external_id.split("#")[0] + ("#" if "#" in b.external_id else ""): b for b in rows}


def test_a_feed_syncs_with_the_busy_rules_and_a_second_run_changes_nothing(session, feed):
    conn = connected(session, feed.url)
    first = sync_connection(session, conn.id, PROVIDERS, NOW)
    assert first.outcome == "synced"
    rows = session.scalars(select(BusyBlock).where(BusyBlock.connection_id == conn.id)).all()
    ids = sorted(b.external_id.split("#")[0] for b in rows)
    assert ids == ["allday", "daily", "daily", "daily", "plain"]
    allday = next(b for b in rows if b.external_id.split("#")[0] == "allday")
    # Midnight in the feed's zone (Paris is UTC+1 in January).
    assert allday.starts_at == datetime(2026, 1, 19, 23, tzinfo=UTC)
    assert allday.ends_at == datetime(2026, 1, 20, 23, tzinfo=UTC)
    assert conn.secret != feed.url.encode() and feed.url.encode() not in conn.secret

    again = sync_connection(session, conn.id, PROVIDERS, NOW)
    assert again.changed_block_ids == [] and again.deleted == 0

    feed.body = FEED.replace("DTSTART:20260112T120000Z", "DTSTART:20260112T113000Z").encode()
    feed.body = feed.body.replace(b"UID:allday", b"UID:allday2")
    moved = sync_connection(session, conn.id, PROVIDERS, NOW)
    assert len(moved.changed_block_ids) == 2 and moved.deleted == 1


@pytest.mark.parametrize(
    "url", ["ftp://example.com/a.ics", "file:///etc/passwd", "javascript:x", ""]
)
def test_only_http_urls(url):
    with pytest.raises(ics.FeedError):
        ics.normalize_url(url)


def test_webcal_means_https():
    assert ics.normalize_url("webcal://example.com/a.ics") == "https://example.com/a.ics"


def test_private_addresses_are_refused_unless_allowed(feed):
    with pytest.raises(ics.FeedError, match="private"):
        ics.fetch(feed.url, ics.FeedOptions())


def test_too_large_is_refused_and_marks_the_connection(session, feed):
    feed.body = b"X" * 20_000
    with pytest.raises(ics.FeedError, match="larger"):
        ics.fetch(feed.url, ics.FeedOptions(max_bytes=10_000, allow_private=True))
    conn = connected(session, feed.url)
    small = Providers(PROVIDERS.box, None, ics.FeedOptions(max_bytes=10_000, allow_private=True))
    assert sync_connection(session, conn.id, small, NOW).outcome == "refused"
    assert conn.status == "error" and "larger" in conn.last_error


def test_a_slow_feed_times_out_and_keeps_the_blocks(session, feed):
    conn = connected(session, feed.url)
    sync_connection(session, conn.id, PROVIDERS, NOW)
    feed.delay = 2.0
    slow = Providers(PROVIDERS.box, None, ics.FeedOptions(timeout=0.5, allow_private=True))
    started = time.monotonic()
    result = sync_connection(session, conn.id, slow, NOW)
    assert time.monotonic() - started < 1.9
    assert result.outcome == "unavailable" and conn.status == "connected"
    assert conn.failures == 1 and "time" in conn.last_error
    assert session.query(BusyBlock).filter_by(connection_id=conn.id).count() == 5


def test_a_5xx_is_retried_a_404_needs_the_owner(session, feed):
    conn = connected(session, feed.url)
    feed.status = 503
    assert sync_connection(session, conn.id, PROVIDERS, NOW).outcome == "unavailable"
    feed.status = 404
    assert sync_connection(session, conn.id, PROVIDERS, NOW).outcome == "refused"
    assert conn.status == "error"


def test_not_a_calendar(session, feed):
    feed.body = b"<html>hello</html>"
    conn = connected(session, feed.url)
    assert sync_connection(session, conn.id, PROVIDERS, NOW).outcome == "refused"
    assert "iCal" in conn.last_error
