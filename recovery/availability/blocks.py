"""Busy time: blocks a resource (or the whole shop) and what booking and recovery obey.

A block stops new bookings, staff moves and recovered bookings in its time; bookings
already there stay (staff confirm that when they create the block). Manual blocks on one
resource, or two shop-wide ones, never overlap: checked here for SQLite, and on
PostgreSQL by ``ex_busy_blocks_manual_no_overlap``, which also settles races. Synced
blocks mirror a calendar and are read-only here.

Changing a block locks the live openings in its time first (the same row locks as the
recovery loop's transitions), so a YES being accepted and a block being saved run one
after the other: either the block sees the new booking and asks for a confirmation, or
the accept sees the block. Withdrawing the openings themselves is the offers layer's job
(``recovery.offers.withdraw``).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import exists, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from recovery.errors import NotFound
from recovery.models import (
    ACTIVE_APPOINTMENT_STATUSES,
    Appointment,
    BlockSource,
    BusyBlock,
    OpeningStatus,
    Resource,
    SlotOpening,
)

# Longer is a typo (a year off), and a range that long would only hide the calendar.
MAX_BLOCK_LENGTH = timedelta(days=2 * 365 + 1)
MAX_REASON_LENGTH = 200


class TimeBlocked(ValueError):
    """The time is blocked on that resource or for the whole shop (message names it)."""

    def __init__(self, block: BusyBlock) -> None:
        super().__init__(f"blocked: {describe(block)}")
        self.block = block


class BlockError(ValueError):
    """A block change that cannot be made (message says why, in staff's words)."""


class ReadOnlyBlock(BlockError):
    """A synced block: its calendar owns it."""


class BlockOverlap(BlockError):
    """Another manual block already covers part of that time."""


class NeedsConfirmation(BlockError):
    """The block would cover bookings staff have not confirmed yet; nothing was written."""

    def __init__(self, clashes: list[Appointment]) -> None:
        ids = ", ".join(f"#{a.id}" for a in clashes)
        super().__init__(f"the block would cover bookings {ids}: confirm to save it anyway")
        self.clashes = clashes


@dataclass(frozen=True)
class BlockChange:
    block: BusyBlock
    clashes: list[Appointment] = field(default_factory=list)  # bookings left in its time


def describe(block: BusyBlock) -> str:
    """``Training day (block #12, whole shop)``: how a block is named to staff."""
    where = "whole shop" if block.resource_id is None else "this resource"
    return f"{block.reason or 'busy time'} (block #{block.id}, {where})"


def _covers(shop_id, resource_id, starts_at, ends_at) -> list:
    """A block (of any source) of the shop, on that resource or shop-wide, overlapping the
    range: values or columns (an opening's, for ``blocked_openings``)."""
    return [
        BusyBlock.shop_id == shop_id,
        BusyBlock.starts_at < ends_at,
        BusyBlock.ends_at > starts_at,
        or_(BusyBlock.resource_id == resource_id, BusyBlock.resource_id.is_(None)),
    ]


def blocking(
    session: Session,
    shop_id: int,
    resource_id: int | None,
    starts_at: datetime,
    ends_at: datetime,
) -> BusyBlock | None:
    """A block (of any source) on that resource, or shop-wide, overlapping the range.

    One query, on ``ix_busy_blocks_shop_range``. ``resource_id=None`` asks about any block
    of the shop.
    """
    conditions = _covers(shop_id, resource_id, starts_at, ends_at)
    if resource_id is None:
        conditions = conditions[:-1]
    query = select(BusyBlock).where(*conditions)
    return session.scalar(query.order_by(BusyBlock.starts_at, BusyBlock.id).limit(1))


def blocked_openings(session: Session, opening_ids: list[int]) -> set[int]:
    """Those of ``opening_ids`` whose time a block covers (``blocking`` for many, in one
    query)."""
    if not opening_ids:
        return set()
    covered = exists().where(
        *_covers(
            SlotOpening.shop_id, SlotOpening.resource_id, SlotOpening.starts_at,
            SlotOpening.ends_at,
        )
    )  # fmt: skip
    return set(
        session.scalars(select(SlotOpening.id).where(SlotOpening.id.in_(opening_ids), covered))
    )


def ensure_not_blocked(
    session: Session,
    shop_id: int,
    resource_id: int | None,
    starts_at: datetime,
    ends_at: datetime,
) -> None:
    block = blocking(session, shop_id, resource_id, starts_at, ends_at)
    if block is not None:
        raise TimeBlocked(block)


def clashing_bookings(
    session: Session,
    shop_id: int,
    resource_id: int | None,
    starts_at: datetime,
    ends_at: datetime,
) -> list[Appointment]:
    """Active bookings a block on that resource (None: every resource) would cover."""
    query = select(Appointment).where(
        Appointment.shop_id == shop_id,
        Appointment.status.in_(ACTIVE_APPOINTMENT_STATUSES),
        Appointment.starts_at < ends_at,
        Appointment.ends_at > starts_at,
    )
    if resource_id is not None:
        query = query.where(Appointment.resource_id == resource_id)
    return list(session.scalars(query.order_by(Appointment.starts_at, Appointment.id)))


def add_manual_block(
    session: Session,
    shop_id: int,
    resource_id: int | None,
    starts_at: datetime,
    ends_at: datetime,
    reason: str = "",
    created_by_id: int | None = None,
    confirmed_ids: Collection[int] = (),
) -> BlockChange:
    """Staff block time. Bookings in it stay, but only those staff confirmed
    (``confirmed_ids``): any other clash raises ``NeedsConfirmation`` and writes nothing."""
    reason = _check(session, shop_id, resource_id, starts_at, ends_at, reason)
    _lock_live_openings(session, shop_id, resource_id, starts_at, ends_at)
    _ensure_no_manual_overlap(session, shop_id, resource_id, starts_at, ends_at)
    clashes = _confirmed_clashes(session, shop_id, resource_id, starts_at, ends_at, confirmed_ids)
    block = BusyBlock(
        shop_id=shop_id,
        resource_id=resource_id,
        starts_at=starts_at,
        ends_at=ends_at,
        reason=reason,
        source=BlockSource.MANUAL,
        created_by_id=created_by_id,
    )
    _write(session, lambda: session.add(block))
    return BlockChange(block, clashes)


def update_manual_block(
    session: Session,
    shop_id: int,
    block_id: int,
    resource_id: int | None,
    starts_at: datetime,
    ends_at: datetime,
    reason: str = "",
    confirmed_ids: Collection[int] = (),
) -> BlockChange:
    """Staff change a manual block's time, resource or reason (same rules as adding)."""
    block = _own_block(session, shop_id, block_id)
    reason = _check(session, shop_id, resource_id, starts_at, ends_at, reason)
    _lock_live_openings(session, shop_id, resource_id, starts_at, ends_at)
    _ensure_no_manual_overlap(session, shop_id, resource_id, starts_at, ends_at, block.id)
    clashes = _confirmed_clashes(session, shop_id, resource_id, starts_at, ends_at, confirmed_ids)

    def change() -> None:
        block.resource_id, block.starts_at, block.ends_at = resource_id, starts_at, ends_at
        block.reason = reason

    _write(session, change)
    return BlockChange(block, clashes)


def delete_block(session: Session, shop_id: int, block_id: int) -> None:
    """Staff remove a manual block. Openings it withdrew stay expired: their customers
    were already told the slot is gone."""
    block = _own_block(session, shop_id, block_id)
    session.delete(block)
    session.flush()


# ---------------------------------------------------------------- helpers


def _own_block(session: Session, shop_id: int, block_id: int) -> BusyBlock:
    block = session.get(BusyBlock, block_id)
    if block is None or block.shop_id != shop_id:
        raise NotFound("no such busy block in this shop")
    if not block.is_manual:
        raise ReadOnlyBlock(
            f"block #{block.id} is synced from a calendar ({block.source}): change it there"
        )
    return block


def _check(
    session: Session,
    shop_id: int,
    resource_id: int | None,
    starts_at: datetime,
    ends_at: datetime,
    reason: str,
) -> str:
    if starts_at.tzinfo is None or ends_at.tzinfo is None:
        raise ValueError("naive datetime refused: pass an aware datetime (UTC)")
    if ends_at <= starts_at:
        raise BlockError("the end must be after the start")
    if ends_at - starts_at > MAX_BLOCK_LENGTH:
        raise BlockError("a block can be at most two years long")
    reason = (reason or "").strip()
    if len(reason) > MAX_REASON_LENGTH:
        raise BlockError(f"the reason can be at most {MAX_REASON_LENGTH} characters")
    if resource_id is not None:
        resource = session.get(Resource, resource_id)
        if resource is None or resource.shop_id != shop_id:
            raise NotFound("no such resource in this shop")
    return reason


def _lock_live_openings(
    session: Session,
    shop_id: int,
    resource_id: int | None,
    starts_at: datetime,
    ends_at: datetime,
) -> None:
    """Row-lock the live openings in the block's time, in id order (the loop locks an
    opening before anything else, so this order cannot deadlock with it). A YES in
    progress finishes first and its booking then shows up as a clash; a YES after
    waits for this transaction and then finds the block."""
    query = select(SlotOpening.id).where(
        SlotOpening.status.in_((OpeningStatus.OPEN, OpeningStatus.FILLED)),
        SlotOpening.starts_at < ends_at,
        SlotOpening.ends_at > starts_at,
    )
    if resource_id is not None:
        query = query.where(SlotOpening.resource_id == resource_id)
    query = query.where(SlotOpening.shop_id == shop_id)
    session.execute(query.order_by(SlotOpening.id).with_for_update()).all()


def _ensure_no_manual_overlap(
    session: Session,
    shop_id: int,
    resource_id: int | None,
    starts_at: datetime,
    ends_at: datetime,
    ignore_id: int | None = None,
) -> None:
    """The exclusion constraint's rule in code: one manual block at a time per resource,
    and one at a time for the whole shop (a resource's block may sit inside a shop-wide
    one)."""
    query = select(BusyBlock).where(
        BusyBlock.shop_id == shop_id,
        BusyBlock.source == BlockSource.MANUAL,
        BusyBlock.starts_at < ends_at,
        BusyBlock.ends_at > starts_at,
        BusyBlock.resource_id.is_(None)
        if resource_id is None
        else BusyBlock.resource_id == resource_id,
    )
    if ignore_id is not None:
        query = query.where(BusyBlock.id != ignore_id)
    other = session.scalar(query.order_by(BusyBlock.starts_at).limit(1))
    if other is not None:
        raise BlockOverlap(f"it overlaps another manual block: {describe(other)}")


def _confirmed_clashes(
    session: Session,
    shop_id: int,
    resource_id: int | None,
    starts_at: datetime,
    ends_at: datetime,
    confirmed_ids: Collection[int],
) -> list[Appointment]:
    clashes = clashing_bookings(session, shop_id, resource_id, starts_at, ends_at)
    confirmed = set(confirmed_ids)
    if any(a.id not in confirmed for a in clashes):
        raise NeedsConfirmation(clashes)
    return clashes


def _write(session: Session, change) -> None:
    """Apply and flush in a savepoint: a concurrent manual block that won the race is
    refused by the exclusion constraint, and the caller's transaction stands."""
    try:
        with session.begin_nested():
            change()
            session.flush()
    except IntegrityError as exc:
        if "ex_busy_blocks_manual_no_overlap" in str(exc.orig):
            raise BlockOverlap("it overlaps another manual block saved at the same time") from None
        raise
