"""Mirror one connection's calendar into busy blocks.

A run reads the window from now to ``WINDOW`` ahead and leaves the connection's blocks
equal to the busy events there: upserted by external id (inserted, or moved in place)
and deleted when the event is gone, moved out of the window or no longer busy. A repeated
run changes nothing. The writes are a constant number of statements whatever the number
of events (one ``INSERT ... ON CONFLICT DO UPDATE`` per thousand, one ``DELETE``, one
``COUNT``), which ``bench/calendar_sync_bench.py`` measures.

Two runs of one calendar never overlap: each takes a transaction-scoped advisory lock
on the connection first and a second run that cannot get it does nothing (the first
one's result is the same). Errors never reach the shop: a revoked grant marks the
connection ``error`` for the owner to reconnect; a network failure keeps the last good
blocks, records the error and asks the caller to retry with backoff.

The blocks a run inserted or moved are returned, so the caller (the job) can have the
offers layer withdraw any opening they now cover.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from recovery.availability.calendars import google, ics
from recovery.availability.calendars.secrets import InvalidToken, SecretBox, box_from_config
from recovery.effects import EffectKind, request
from recovery.models import (
    BlockSource,
    BusyBlock,
    CalendarConnection,
    CalendarProvider,
    ConnectionStatus,
    OpeningStatus,
    Resource,
    SlotOpening,
)

log = logging.getLogger(__name__)

WINDOW = timedelta(days=60)
# Incremental syncs only report changes, so events that enter the window as it moves on
# are read by a full sync once the window has moved by this much.
FULL_SYNC_DRIFT = timedelta(days=1)
UPSERT_BATCH = 1000
LOCK_NAMESPACE = 0x43414C  # "CAL": first key of pg_try_advisory_xact_lock(int, int)
MAX_BACKOFF = timedelta(hours=6)
BASE_BACKOFF = timedelta(minutes=10)
REASONS = {
    CalendarProvider.GOOGLE: "Busy (Google Calendar)",
    CalendarProvider.ICS: "Busy (calendar feed)",
}


@dataclass(frozen=True)
class Busy:
    external_id: str
    starts_at: datetime
    ends_at: datetime


@dataclass
class SyncResult:
    outcome: str  # synced | locked | revoked | refused | unavailable | gone | disabled
    changed_block_ids: list[int] = field(default_factory=list)  # inserted or moved
    deleted: int = 0
    full: bool = False

    @property
    def retry(self) -> bool:
        return self.outcome == "unavailable"


@dataclass(frozen=True)
class Providers:
    """What a sync needs from the app's configuration."""

    box: SecretBox | None
    google: google.GoogleSettings | None
    feed: ics.FeedOptions = field(default_factory=ics.FeedOptions)

    @classmethod
    def from_config(cls, config: Mapping) -> Providers:
        return cls(
            box_from_config(config),
            google.settings_from_config(config),
            ics.FeedOptions(allow_private=bool(config.get("CALENDAR_FEED_ALLOW_PRIVATE"))),
        )


# ---------------------------------------------------------------- busy rules


def _zone(name: str | None, fallback: str) -> ZoneInfo:
    for candidate in (name, fallback, "UTC"):
        try:
            if candidate:
                return ZoneInfo(candidate)
        except (ZoneInfoNotFoundError, ValueError):
            continue
    return ZoneInfo("UTC")


def _google_time(value: Mapping, zone: ZoneInfo) -> datetime:
    if "dateTime" in value:
        moment = datetime.fromisoformat(value["dateTime"].replace("Z", "+00:00"))
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=_zone(value.get("timeZone"), str(zone)))
        return moment.astimezone(UTC)
    day = date.fromisoformat(value["date"])  # all-day: midnight in the calendar's zone
    return datetime(day.year, day.month, day.day, tzinfo=zone).astimezone(UTC)


def google_busy(item: Mapping, zone: ZoneInfo) -> Busy | None:
    """The block an event makes, or None when it leaves the time free: cancelled,
    transparent ("free"), declined by the calendar's owner, or a working-location marker."""
    if item.get("status") == "cancelled" or item.get("transparency") == "transparent":
        return None
    if item.get("eventType") == "workingLocation":
        return None
    for attendee in item.get("attendees") or ():
        if attendee.get("self") and attendee.get("responseStatus") == "declined":
            return None
    try:
        starts_at = _google_time(item["start"], zone)
        ends_at = _google_time(item["end"], zone)
    except (KeyError, ValueError):
        return None
    if ends_at <= starts_at:
        return None
    return Busy(item["id"], starts_at, ends_at)


def _in_window(busy: Busy, start: datetime, end: datetime) -> bool:
    return busy.ends_at > start and busy.starts_at < end


# ---------------------------------------------------------------- the run


def try_lock(session: Session, connection_id: int) -> bool:
    """The connection's sync lock, held until the transaction ends. SQLite (the embedded
    demo) has one writer at a time anyway."""
    if session.get_bind().dialect.name != "postgresql":
        return True
    return bool(
        session.scalar(sa.select(sa.func.pg_try_advisory_xact_lock(LOCK_NAMESPACE, connection_id)))
    )


def sync_connection(
    session: Session, connection_id: int, providers: Providers, now: datetime
) -> SyncResult:
    if not try_lock(session, connection_id):
        return SyncResult("locked")
    # Read after the lock, so a run that waited sees the sync token the last one stored.
    conn = session.scalar(
        sa.select(CalendarConnection)
        .where(CalendarConnection.id == connection_id)
        .execution_options(populate_existing=True)
    )
    if conn is None:
        return SyncResult("gone")
    if conn.status == ConnectionStatus.ERROR:
        return SyncResult("refused")  # waits for the owner to reconnect
    if providers.box is None:
        return SyncResult("disabled")
    try:
        secret = providers.box.decrypt(conn.secret)
    except InvalidToken:
        return _refused(
            conn,
            "The stored secret cannot be read with the configured keys: reconnect the calendar.",
            now,
        )
    try:
        if conn.provider == CalendarProvider.GOOGLE:
            if providers.google is None:
                return SyncResult("disabled")
            result = _sync_google(session, conn, secret, providers.google, now)
        else:
            result = _sync_feed(session, conn, secret, providers.feed, now)
    except (google.GrantRevoked, google.ProviderRefused, ics.FeedError) as exc:
        return _refused(conn, str(exc), now, revoked=isinstance(exc, google.GrantRevoked))
    except (google.ProviderUnavailable, ics.FeedUnavailable) as exc:
        conn.failures += 1
        conn.last_error, conn.last_error_at = str(exc)[:500], now
        session.flush()
        log.warning("calendar %s: %s (attempt %s)", conn.id, exc, conn.failures)
        return SyncResult("unavailable")
    conn.block_count = session.scalar(
        sa.select(sa.func.count(BusyBlock.id)).where(
            BusyBlock.connection_id == conn.id, BusyBlock.ends_at > now
        )
    )
    conn.last_synced_at, conn.last_error, conn.last_error_at, conn.failures = now, None, None, 0
    session.flush()
    return result


def _refused(conn: CalendarConnection, message: str, now: datetime, revoked: bool = True):
    conn.status = ConnectionStatus.ERROR
    conn.last_error, conn.last_error_at = message[:500], now
    conn.sync_token = None
    conn.failures += 1
    log.warning("calendar %s needs reconnecting: %s", conn.id, message)
    return SyncResult("revoked" if revoked else "refused")


def _sync_google(
    session: Session,
    conn: CalendarConnection,
    refresh_token: str,
    settings: google.GoogleSettings,
    now: datetime,
) -> SyncResult:
    window_end = now + WINDOW
    incremental = (
        conn.sync_token is not None
        and conn.window_ends_at is not None
        and window_end - conn.window_ends_at < FULL_SYNC_DRIFT
    )
    if incremental:
        try:
            pages = list(
                google.list_events(
                    settings, refresh_token, conn.calendar_id, sync_token=conn.sync_token
                )
            )
        except google.SyncTokenExpired:
            conn.sync_token = None
            incremental = False
    if not incremental:
        pages = list(
            google.list_events(
                settings, refresh_token, conn.calendar_id, time_min=now, time_max=window_end
            )
        )
    zone_name = next((p.time_zone for p in pages if p.time_zone), None) or conn.timezone
    conn.timezone = zone_name
    zone = _zone(zone_name, conn.shop.timezone)
    items = [item for page in pages for item in page.items]
    conn.sync_token = pages[-1].next_sync_token if pages else None
    if incremental:
        return _apply_changes(session, conn, items, zone, now)
    conn.window_ends_at = window_end
    busy = [b for item in items if (b := google_busy(item, zone)) is not None]
    return _apply_full(session, conn, [b for b in busy if _in_window(b, now, window_end)], now)


def _apply_changes(
    session: Session, conn: CalendarConnection, items: list[Mapping], zone: ZoneInfo, now: datetime
) -> SyncResult:
    """Changes since the sync token: busy ones in the window are upserted, every other
    changed id (cancelled, now free, declined, moved out) loses its block. A cancelled
    recurring series takes its expanded instances (``<id>_<time>``) with it."""
    window_end = conn.window_ends_at
    keep: dict[str, Busy] = {}
    drop: set[str] = set()
    series: set[str] = set()
    for item in items:
        busy = google_busy(item, zone)
        if busy is not None and _in_window(busy, now, window_end):
            keep[busy.external_id] = busy
            drop.discard(busy.external_id)
        else:
            keep.pop(item["id"], None)
            drop.add(item["id"])
            if item.get("status") == "cancelled" and "_" not in item["id"]:
                series.add(item["id"])
    changed = _upsert(session, conn, keep.values())
    deleted = 0
    if drop or series:
        match = [BusyBlock.external_id.in_(drop)] if drop else []
        match += [BusyBlock.external_id.startswith(s + "_", autoescape=True) for s in series]
        deleted = _delete(session, conn, sa.or_(*match))
    return SyncResult("synced", changed, deleted, full=False)


def _sync_feed(
    session: Session, conn: CalendarConnection, url: str, options: ics.FeedOptions, now: datetime
) -> SyncResult:
    window_end = now + WINDOW
    data = ics.fetch(url, options)
    events, zone_name = ics.parse(data, now, window_end, conn.timezone or conn.shop.timezone)
    conn.timezone = zone_name
    conn.window_ends_at = window_end
    busy = [Busy(e.external_id, e.starts_at, e.ends_at) for e in events if e.busy]
    return _apply_full(session, conn, busy, now)


def _apply_full(
    session: Session, conn: CalendarConnection, busy: list[Busy], now: datetime
) -> SyncResult:
    """The window holds exactly ``busy``: upsert it, delete the connection's other blocks
    that have not ended (blocks in the past are history and stay)."""
    unique = {b.external_id: b for b in busy}
    changed = _upsert(session, conn, unique.values())
    stale = BusyBlock.ends_at > now
    if unique:
        stale = sa.and_(stale, BusyBlock.external_id.not_in(list(unique)))
    deleted = _delete(session, conn, stale)
    return SyncResult("synced", changed, deleted, full=True)


def _insert(session: Session):
    return (postgresql if session.get_bind().dialect.name == "postgresql" else sqlite).insert


def _upsert(session: Session, conn: CalendarConnection, busy: Iterable[Busy]) -> list[int]:
    """Insert new blocks and move changed ones; returns the ids of both. An unchanged
    block is not written at all (the ``WHERE`` of ``DO UPDATE``), so it is not returned
    and a repeated run reports nothing."""
    source = BlockSource(conn.provider)
    rows = [
        {
            "shop_id": conn.shop_id,
            "resource_id": conn.resource_id,
            "starts_at": b.starts_at,
            "ends_at": b.ends_at,
            "reason": REASONS[CalendarProvider(conn.provider)],
            "source": source.value,
            "connection_id": conn.id,
            "external_id": b.external_id,
            "created_at": datetime.now(UTC),
        }
        for b in busy
    ]
    changed: list[int] = []
    table = BusyBlock.__table__
    for start in range(0, len(rows), UPSERT_BATCH):
        statement = _insert(session)(table).values(rows[start : start + UPSERT_BATCH])
        statement = statement.on_conflict_do_update(
            index_elements=["source", "connection_id", "external_id"],
            set_={
                "starts_at": statement.excluded.starts_at,
                "ends_at": statement.excluded.ends_at,
                "resource_id": statement.excluded.resource_id,
            },
            where=sa.or_(
                table.c.starts_at != statement.excluded.starts_at,
                table.c.ends_at != statement.excluded.ends_at,
                table.c.resource_id.is_distinct_from(statement.excluded.resource_id),
            ),
        ).returning(table.c.id)
        changed += session.execute(statement).scalars().all()
    return changed


def _delete(session: Session, conn: CalendarConnection, condition) -> int:
    result = session.execute(
        sa.delete(BusyBlock)
        .where(BusyBlock.connection_id == conn.id, condition)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount or 0


# ---------------------------------------------------------------- connections


def connect(
    session: Session,
    resource: Resource,
    provider: CalendarProvider,
    encrypted_secret: bytes,
    staff_id: int | None,
    calendar_id: str = "primary",
) -> CalendarConnection:
    """Connect (or reconnect) a resource's calendar and ask for a first sync. Replacing
    another kind of connection drops its blocks; a reconnect keeps them until the sync."""
    conn = session.scalar(
        sa.select(CalendarConnection).where(CalendarConnection.resource_id == resource.id)
    )
    if conn is None:
        conn = CalendarConnection(shop_id=resource.shop_id, resource_id=resource.id)
        session.add(conn)
    elif conn.provider != provider:
        _delete(session, conn, sa.true())
        conn.block_count = 0
    conn.provider = provider.value
    conn.secret = encrypted_secret
    conn.calendar_id = calendar_id
    conn.status = ConnectionStatus.CONNECTED.value
    conn.sync_token = conn.window_ends_at = conn.last_error = conn.last_error_at = None
    conn.failures = 0
    conn.connected_by_id = staff_id
    session.flush()
    request(session, EffectKind.SYNC_CALENDAR, conn.id)
    return conn


def disconnect(session: Session, connection_id: int) -> int:
    """Delete the connection and its synced blocks; returns how many blocks went. The
    caller revokes the grant first (it holds the decrypted token only that long)."""
    conn = session.get(CalendarConnection, connection_id)
    if conn is None:
        return 0
    removed = _delete(session, conn, sa.true())
    session.delete(conn)
    session.flush()
    return removed


def request_sync(session: Session, connection_id: int) -> None:
    request(session, EffectKind.SYNC_CALENDAR, connection_id)


def due_connections(session: Session, now: datetime) -> list[int]:
    """Connections the periodic run syncs: connected ones, except those still waiting
    out their backoff after failures in a row (10 min, doubling, at most 6 h)."""
    rows = session.execute(
        sa.select(
            CalendarConnection.id, CalendarConnection.failures, CalendarConnection.last_error_at
        )
        .where(CalendarConnection.status == ConnectionStatus.CONNECTED)
        .order_by(CalendarConnection.id)
    ).all()
    due = []
    for ident, failures, last_error_at in rows:
        if failures and last_error_at is not None:
            wait = min(BASE_BACKOFF * 2 ** (failures - 1), MAX_BACKOFF)
            if now < last_error_at + wait:
                continue
        due.append(ident)
    return due


def blocks_covering_open_openings(session: Session, block_ids: list[int]) -> list[int]:
    """Of these blocks, those over an open opening (on their resource, or any for a
    shop-wide block): one query, so a first sync of a thousand events does not ask the
    offers layer a thousand times."""
    if not block_ids:
        return []
    query = (
        sa.select(BusyBlock.id)
        .join(
            SlotOpening,
            sa.and_(
                SlotOpening.shop_id == BusyBlock.shop_id,
                SlotOpening.status == OpeningStatus.OPEN,
                SlotOpening.starts_at < BusyBlock.ends_at,
                SlotOpening.ends_at > BusyBlock.starts_at,
                sa.or_(
                    BusyBlock.resource_id.is_(None),
                    SlotOpening.resource_id == BusyBlock.resource_id,
                ),
            ),
        )
        .where(BusyBlock.id.in_(block_ids))
        .distinct()
        .order_by(BusyBlock.id)
    )
    return list(session.scalars(query))
