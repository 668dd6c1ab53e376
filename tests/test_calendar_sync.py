"""Google Calendar sync, end to end through the real Google client libraries against the
fake Google on 127.0.0.1 (tests/fake_google.py): connect, sync, errors, rotation."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from click.testing import CliRunner
from cryptography.fernet import Fernet
from sqlalchemy import select, text

from jobs.tasks import CalendarUnavailable, sync_calendar, sync_calendars
from recovery.availability.calendars import google
from recovery.availability.calendars.cli import rotate_keys, rotate_keys_command
from recovery.availability.calendars.secrets import SecretBox
from recovery.availability.calendars.sync import Providers, sync_connection
from recovery.db import db
from recovery.effects import EffectKind
from recovery.models import (
    BusyBlock,
    CalendarConnection,
    OfferStatus,
    OpeningStatus,
)
from tests.admin_support import *  # noqa: F403 (the shared fixtures)
from tests.admin_support import forget_cached_request_state, post
from tests.fake_google import CLIENT_ID, CLIENT_SECRET, FakeGoogle

KEY = Fernet.generate_key().decode()
NOW = datetime(2026, 1, 12, 9, 0, tzinfo=UTC)  # the clock fixture's start


@pytest.fixture
def fake():
    with FakeGoogle() as server:
        yield server


@pytest.fixture
def google_config(app, fake, monkeypatch):
    """The app configured for Google, its endpoints on the fake."""
    # requests-oauthlib refuses plain http unless told; the fake has no TLS.
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")
    values = {
        "GOOGLE_CLIENT_ID": CLIENT_ID,
        "GOOGLE_CLIENT_SECRET": CLIENT_SECRET,
        "CALENDAR_TOKEN_KEYS": (KEY,),
        "GOOGLE_OAUTH_BASE_URL": fake.base_url,
        "GOOGLE_CALENDAR_BASE_URL": fake.base_url,
    }
    for name, value in values.items():
        monkeypatch.setitem(app.config, name, value)
    return values


def providers(config) -> Providers:
    return Providers.from_config(config)


def connect(session, fake, world) -> CalendarConnection:
    refresh = "1//stored-refresh-token"
    fake.refresh_tokens[refresh] = True
    conn = CalendarConnection(
        shop_id=world.shop.id,
        resource_id=world.chair.id,
        provider="google",
        secret=SecretBox([KEY]).encrypt(refresh),
    )
    session.add(conn)
    session.flush()
    return conn


def blocks(session, conn) -> dict[str, tuple[datetime, datetime]]:
    rows = session.scalars(select(BusyBlock).where(BusyBlock.connection_id == conn.id))
    return {b.external_id: (b.starts_at, b.ends_at) for b in rows}


def at(hours: float) -> datetime:
    return NOW + timedelta(hours=hours)


# ---------------------------------------------------------------- connect


def test_connect_runs_the_oauth_code_flow_and_stores_the_token_encrypted(
    owner_client, shop_a, google_config, fake, recorder, session
):
    page = owner_client.get(f"/admin/resources/details/?id={shop_a.chair.id}").get_data(True)
    assert "Connect Google Calendar" in page
    answer = post(owner_client, "/admin/resources/calendar/google/", {"id": shop_a.chair.id})
    assert answer.status_code == 302
    consent = urlsplit(answer.location)
    asked = parse_qs(consent.query)
    assert consent.path == "/auth" and asked["access_type"] == ["offline"]
    assert asked["scope"] == [" ".join(google.SCOPES)] and asked["code_challenge_method"] == [
        "S256"
    ]

    # The user clicks Allow; Google sends the browser back with a code and the state.
    back = requests.get(answer.location, allow_redirects=False, timeout=5).headers["Location"]
    wrong_state = back.replace("state=", "state=x")
    callback = urlsplit(back)
    forged = owner_client.get(urlsplit(wrong_state).path + "?" + urlsplit(wrong_state).query)
    assert forged.status_code == 400  # and the pending state is used up
    answer = post(owner_client, "/admin/resources/calendar/google/", {"id": shop_a.chair.id})
    back = requests.get(answer.location, allow_redirects=False, timeout=5).headers["Location"]
    callback = urlsplit(back)
    done = owner_client.get(f"{callback.path}?{callback.query}")
    assert done.status_code == 302

    conn = session.scalar(
        select(CalendarConnection).where(CalendarConnection.resource_id == shop_a.chair.id)
    )
    refresh = next(iter(fake.refresh_tokens))
    assert refresh.encode() not in conn.secret  # encrypted at rest
    assert SecretBox([KEY]).decrypt(conn.secret) == refresh
    assert [e.args for e in recorder.of_kind(EffectKind.SYNC_CALENDAR)] == [(conn.id,)]
    # A replayed callback finds no pending state.
    assert owner_client.get(f"{callback.path}?{callback.query}").status_code == 400


def test_calendar_actions_are_owner_only_and_shop_scoped(
    owner_client, clerk_client, shop_a, shop_b, google_config, session
):
    for url in ("google", "ics", "sync", "disconnect"):
        answer = post(clerk_client, f"/admin/resources/calendar/{url}/", {"id": shop_a.chair.id})
        assert answer.status_code == 403, url
        answer = post(owner_client, f"/admin/resources/calendar/{url}/", {"id": shop_b.chair.id})
        assert answer.status_code == 404, url
    # CSRF on every POST.
    assert (
        owner_client.post(
            "/admin/resources/calendar/sync/", data={"id": shop_a.chair.id}
        ).status_code
        == 400
    )
    forget_cached_request_state()
    page = clerk_client.get(f"/admin/resources/details/?id={shop_a.chair.id}").get_data(True)
    assert "Calendar sync" in page and "Connect Google Calendar" not in page


def test_without_google_settings_the_feature_is_hidden(owner_client, shop_a):
    page = owner_client.get(f"/admin/resources/details/?id={shop_a.chair.id}").get_data(True)
    assert "Calendar sync" not in page
    assert (
        post(owner_client, "/admin/resources/calendar/google/", {"id": shop_a.chair.id}).status_code
        == 404
    )


# ---------------------------------------------------------------- sync


def test_first_sync_then_incremental_with_moved_deleted_recurring_allday_free_declined(
    session, fake, google_config, shop_a
):
    conn = connect(session, fake, shop_a)
    cfg = providers(google_config)
    fake.time_zone = "America/New_York"
    fake.put("plain", at(2), at(3))
    fake.put("moving", at(5), at(6))
    fake.put("doomed", at(8), at(9))
    fake.put("daily", at(24), at(25), repeat_daily=3)
    fake.put("holiday", date(2026, 1, 20), date(2026, 1, 22))
    fake.put("free", at(30), at(31), transparency="transparent")
    fake.put("declined", at(32), at(33), declined=True)
    fake.put("far", at(24 * 70), at(24 * 70 + 1))  # beyond the 60-day window

    first = sync_connection(session, conn.id, cfg, NOW)
    assert first.outcome == "synced" and first.full
    got = blocks(session, conn)
    assert set(got) == {
        "plain",
        "moving",
        "doomed",
        "holiday",
        "daily_20260113T090000Z",
        "daily_20260114T090000Z",
        "daily_20260115T090000Z",
    }
    # All-day: midnight to midnight in the calendar's zone (New York is UTC-5).
    assert got["holiday"] == (
        datetime(2026, 1, 20, 5, tzinfo=UTC),
        datetime(2026, 1, 22, 5, tzinfo=UTC),
    )
    assert len(first.changed_block_ids) == 7 and conn.block_count == 7 and conn.sync_token

    # Nothing changed: a second run writes nothing.
    again = sync_connection(session, conn.id, cfg, NOW)
    assert again.outcome == "synced" and not again.full
    assert again.changed_block_ids == [] and again.deleted == 0
    assert blocks(session, conn) == got

    fake.put("moving", at(7), at(8))  # moved
    fake.delete("doomed")
    fake.delete("daily")  # the whole series
    fake.put("plain", at(2), at(3), transparency="transparent")  # now free
    fake.put("new", at(40), at(41))
    third = sync_connection(session, conn.id, cfg, NOW)
    assert not third.full
    assert fake.calendar_calls()[-1]["syncToken"] == again_token(fake)
    got = blocks(session, conn)
    assert set(got) == {"moving", "holiday", "new"}
    assert got["moving"] == (at(7), at(8))
    assert len(third.changed_block_ids) == 2 and conn.block_count == 3


def again_token(fake) -> str:
    return [p for p in fake.calendar_calls() if "syncToken" in p][-1]["syncToken"]


def test_a_stale_sync_token_means_a_full_resync(session, fake, google_config, shop_a):
    conn = connect(session, fake, shop_a)
    cfg = providers(google_config)
    fake.put("a", at(2), at(3))
    sync_connection(session, conn.id, cfg, NOW)
    fake.expire_sync_tokens()
    fake.events.pop("a")  # gone without a trace: only a full sync notices
    result = sync_connection(session, conn.id, cfg, NOW)
    assert result.full and result.deleted == 1 and blocks(session, conn) == {}


def test_a_revoked_grant_marks_the_connection_and_shows_a_banner(
    session, fake, google_config, shop_a, owner_client
):
    conn = connect(session, fake, shop_a)
    fake.put("a", at(2), at(3))
    sync_connection(session, conn.id, providers(google_config), NOW)
    fake.revoke_all()
    result = sync_connection(session, conn.id, providers(google_config), NOW)
    assert result.outcome == "revoked" and conn.status == "error"
    assert "reconnect" in conn.last_error
    assert set(blocks(session, conn)) == {"a"}  # the last good blocks stay
    session.commit()
    forget_cached_request_state()
    page = owner_client.get(f"/admin/resources/details/?id={shop_a.chair.id}").get_data(True)
    assert 'data-testid="calendar-reconnect"' in page and "Reconnect Google Calendar" in page


def test_a_provider_500_keeps_the_blocks_records_the_error_and_retries(
    app, session, fake, google_config, shop_a, clock
):
    conn = connect(session, fake, shop_a)
    fake.put("a", at(2), at(3))
    sync_connection(session, conn.id, providers(google_config), NOW)
    fake.fail_status = 500
    with pytest.raises(CalendarUnavailable):
        sync_calendar(conn.id)
    session.refresh(conn)
    assert conn.status == "connected" and conn.failures == 1 and "500" in conn.last_error
    assert set(blocks(session, conn)) == {"a"}
    # Backoff: the periodic run skips it for 10 minutes, then tries again.
    assert sync_calendars() == 0
    clock.advance(minutes=11)
    assert sync_calendars() == 1
    fake.fail_status = None
    assert sync_calendar(conn.id).startswith("synced")
    session.refresh(conn)
    assert conn.failures == 0 and conn.last_error is None


def test_two_syncs_of_one_calendar_never_run_at_once(app, session, fake, google_config, shop_a):
    conn = connect(session, fake, shop_a)
    session.commit()
    with db.engine.connect() as other, other.begin():
        other.execute(
            text("SELECT pg_advisory_xact_lock(:ns, :id)"), {"ns": 0x43414C, "id": conn.id}
        )
        assert sync_connection(session, conn.id, providers(google_config), NOW).outcome == "locked"
    assert fake.calendar_calls() == []


def test_a_new_block_withdraws_the_live_offer_it_covers(
    app, session, fake, google_config, shop_a, recorder, clock
):
    conn = connect(session, fake, shop_a)
    opening = shop_a.opening
    fake.put("busy", opening.starts_at - timedelta(minutes=30), opening.ends_at)
    assert sync_calendar(conn.id).startswith("synced: 1 changed")
    session.refresh(opening)
    session.refresh(shop_a.offer)
    assert opening.status == OpeningStatus.EXPIRED
    assert shop_a.offer.status == OfferStatus.EXPIRED


def test_disconnect_revokes_and_removes_the_blocks(
    session, fake, google_config, shop_a, owner_client
):
    conn = connect(session, fake, shop_a)
    fake.put("a", at(2), at(3))
    sync_connection(session, conn.id, providers(google_config), NOW)
    session.commit()
    answer = post(owner_client, "/admin/resources/calendar/disconnect/", {"id": shop_a.chair.id})
    assert answer.status_code == 302
    assert fake.revoked == ["1//stored-refresh-token"]
    assert session.scalar(select(BusyBlock).where(BusyBlock.source == "google")) is None
    assert session.get(CalendarConnection, conn.id) is None


def test_rotate_keys_re_encrypts_every_secret(app, session, fake, shop_a, monkeypatch):
    conn = connect(session, fake, shop_a)
    new_key = Fernet.generate_key().decode()
    rotated, unreadable = rotate_keys(session, SecretBox([new_key, KEY]))
    assert (rotated, unreadable) == (1, [])
    assert SecretBox([new_key]).decrypt(conn.secret) == "1//stored-refresh-token"
    session.commit()
    monkeypatch.setitem(app.config, "CALENDAR_TOKEN_KEYS", (new_key,))
    result = CliRunner().invoke(rotate_keys_command, obj=app.cli)
    assert result.exit_code == 0, result.output
    assert "re-encrypted 1" in result.output
