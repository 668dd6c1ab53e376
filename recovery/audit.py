"""The audit trail: who did what to money and recovery, and what it changed.

One call, ``record``, in the same transaction as the action it describes, so an action
and its record are committed together or not at all. Rows are append-only: the database
refuses UPDATE, DELETE and TRUNCATE of ``audit_events`` (migration 0008), so nothing in
the app (nor anyone with the app's credentials) can rewrite the trail.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm import Session

from recovery.db import utcnow
from recovery.models import AuditEvent, StaffUser


class AuditAction(enum.StrEnum):
    REFUND = "refund"
    MARK_PAID = "mark_paid"
    MARK_FAILED = "mark_failed"
    DEPOSIT_AT_DESK = "deposit_at_desk"
    DEPOSIT_WAIVED = "deposit_waived"
    CANCEL = "cancel"
    MOVE = "move"
    BOOKING_EDITED = "booking_edited"  # an edit that kept the time and resource
    RETRIGGER = "retrigger"
    EXPIRE_OPENING = "expire_opening"
    EXPIRE_OFFER = "expire_offer"
    # Busy time steers recovery too: saving a block withdraws the openings it covers.
    BLOCK_ADDED = "block_added"
    BLOCK_CHANGED = "block_changed"
    BLOCK_DELETED = "block_deleted"
    SETTINGS_CHANGED = "settings_changed"
    STAFF_ADDED = "staff_added"
    STAFF_CHANGED = "staff_changed"
    STAFF_DISABLED = "staff_disabled"
    STAFF_ENABLED = "staff_enabled"
    STAFF_PASSWORD_RESET = "staff_password_reset"  # noqa: S105 (an action name)
    STAFF_DELETED = "staff_deleted"
    TWO_FACTOR_CHANGED = "two_factor_changed"


# Never copied into a record, whatever a caller passes: secrets stay out of the trail.
SECRET_FIELDS = frozenset({"password_hash", "totp_secret", "manage_token", "token", "secret"})


def _plain(value: Any) -> Any:
    """A JSON-safe copy of a column value."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        return None
    return value


def snapshot(row: object, fields: Iterable[str]) -> dict[str, Any]:
    """The named columns of a row, JSON-safe, secrets left out."""
    return {f: _plain(getattr(row, f)) for f in fields if f not in SECRET_FIELDS}


def changes(row: object) -> tuple[dict[str, Any], dict[str, Any]]:
    """Before and after of the columns changed on a row in this session (not yet flushed):
    what a settings or staff edit changed, and nothing else."""
    before: dict[str, Any] = {}
    after: dict[str, Any] = {}
    state = sa_inspect(row)
    for attr in state.mapper.column_attrs:
        if attr.key in SECRET_FIELDS:
            continue
        history = state.attrs[attr.key].history
        if history.has_changes():
            old = history.deleted[0] if history.deleted else None
            new = history.added[0] if history.added else None
            if old != new:
                before[attr.key] = _plain(old)
                after[attr.key] = _plain(new)
    return before, after


def diff(
    before: Mapping[str, Any], after: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Only the keys whose value differs between two snapshots of the same thing."""
    keys = [*before, *(k for k in after if k not in before)]
    changed = [k for k in keys if before.get(k) != after.get(k)]
    return {k: before.get(k) for k in changed}, {k: after.get(k) for k in changed}


def record_change(
    session: Session,
    actor: StaffUser,
    action: AuditAction,
    target: object,
    before: Mapping[str, Any],
    after: Mapping[str, Any],
    note: str = "",
) -> AuditEvent | None:
    """Record ``action`` only if it changed something: an action the domain refused or
    found already done (a double click, an idempotent retry) leaves no row. Both
    snapshots must be taken in this transaction, the first after the row was locked."""
    was, now = diff(before, after)
    if not was and not now:
        return None
    return record(session, actor, action, target, was, now, note)


def record(
    session: Session,
    actor: StaffUser,
    action: AuditAction,
    target: object | None = None,
    before: Mapping[str, Any] | None = None,
    after: Mapping[str, Any] | None = None,
    note: str = "",
    now: datetime | None = None,
) -> AuditEvent:
    """Add one audit row for ``actor``'s action on ``target`` (a model row) in their shop.
    Flushes nothing itself and commits nothing: the caller's transaction carries it."""
    target_id = getattr(target, "id", None) if target is not None else None
    event = AuditEvent(
        shop_id=actor.shop_id,
        staff_id=actor.id,
        staff_email=actor.email,
        action=AuditAction(action).value,
        target_type=type(target).__tablename__ if target is not None else "",
        target_id=target_id,
        before={k: v for k, v in (before or {}).items() if k not in SECRET_FIELDS} or None,
        after={k: v for k, v in (after or {}).items() if k not in SECRET_FIELDS} or None,
        note=note[:500],
        created_at=now or utcnow(),
    )
    session.add(event)
    return event
