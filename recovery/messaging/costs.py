"""What a shop's texts cost, by purpose group: one query shared by the dashboard and the log.

Counted: outbound texts the provider accepted, since that is what the provider bills:
``sent`` and ``delivered``, and ``failed`` ones that carry a provider id (the carrier
reported them undelivered after the provider took them). Not counted: texts the shop
receives (inbound), texts still ``queued`` or ``sending``, ``suppressed`` ones (the number
opted out before sending), ``cancelled`` ones (their offer ended before they went out) and
``failed`` ones the provider refused outright (no provider id).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, case, func, literal, or_, select
from sqlalchemy.orm import Session

from recovery.messaging.outbox import PURPOSE_GROUPS, PurposeGroup
from recovery.models import Direction, Message, MessageStatus

ACCEPTED_BY_PROVIDER = or_(
    Message.status.in_((MessageStatus.SENT, MessageStatus.DELIVERED)),
    and_(Message.status == MessageStatus.FAILED, Message.provider_sid.is_not(None)),
)


@dataclass(frozen=True)
class GroupCost:
    group: PurposeGroup
    count: int = 0
    segments: int = 0
    cost_minor: int = 0  # estimated, in minor units of the shop's currency


@dataclass(frozen=True)
class SmsCosts:
    groups: list[GroupCost]  # every group, in ``PurposeGroup`` order

    @property
    def count(self) -> int:
        return sum(g.count for g in self.groups)

    @property
    def segments(self) -> int:
        return sum(g.segments for g in self.groups)

    @property
    def cost_minor(self) -> int:
        return sum(g.cost_minor for g in self.groups)


def purpose_group_sql():
    """``outbox.purpose_group`` as SQL, built from the same ``PURPOSE_GROUPS`` mapping."""
    return case(
        *(
            (Message.purpose.in_([p.value for p in purposes]), literal(group.value))
            for group, purposes in PURPOSE_GROUPS.items()
        ),
        else_=literal(PurposeGroup.OTHER.value),
    )


def sms_costs(
    session: Session,
    shop_id: int,
    starts: datetime | None = None,
    ends: datetime | None = None,
) -> SmsCosts:
    """Count, segments and estimated cost per purpose group of the shop's texts created in
    ``[starts, ends)`` (a bound that is None is open). Groups with nothing are zeros."""
    conditions = [
        Message.shop_id == shop_id,
        Message.direction == Direction.OUTBOUND,
        ACCEPTED_BY_PROVIDER,
    ]
    if starts is not None:
        conditions.append(Message.created_at >= starts)
    if ends is not None:
        conditions.append(Message.created_at < ends)
    # The group is computed in a subquery and grouped by name: PostgreSQL would not see a
    # CASE repeated in GROUP BY as the same expression (its literals are separate params).
    texts = (
        select(
            purpose_group_sql().label("purpose_group"),
            Message.segments,
            Message.cost_estimate_minor,
        )
        .where(*conditions)
        .subquery()
    )
    rows = session.execute(
        select(
            texts.c.purpose_group,
            func.count(),
            func.coalesce(func.sum(texts.c.segments), 0),
            func.coalesce(func.sum(texts.c.cost_estimate_minor), 0),
        ).group_by(texts.c.purpose_group)
    )
    found = {
        group: GroupCost(PurposeGroup(group), int(count), int(segs), int(cost))
        for group, count, segs, cost in rows
    }
    return SmsCosts([found.get(group.value, GroupCost(group)) for group in PurposeGroup])
