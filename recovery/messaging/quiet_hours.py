"""Quiet hours: the shop's nightly window in which offers and reminders wait.

The window is wall-clock times in the shop's zone (``Shop.quiet_hours_start`` to
``quiet_hours_end``, end excluded); equal times mean none. It may run past midnight.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from recovery.models import Shop


def quiet_until(shop: Shop, when: datetime) -> datetime | None:
    """The aware UTC end of the quiet period containing ``when``, or None outside one."""
    start, end = shop.quiet_hours_start, shop.quiet_hours_end
    if start == end:
        return None
    zone = ZoneInfo(shop.timezone)
    local = when.astimezone(zone)
    clock = local.time().replace(tzinfo=None)
    if start < end:
        if not start <= clock < end:
            return None
        day = local.date()
    elif clock >= start:  # overnight window, evening part: it ends tomorrow
        day = local.date() + timedelta(days=1)
    elif clock < end:  # overnight window, morning part
        day = local.date()
    else:
        return None
    # On a daylight-saving change the end's wall time may not exist (spring: fold 0 reads
    # it with the old offset, so it lands just as far past the jump) or may occur twice
    # (autumn: the first time, unless ``when`` is already past it, on the repeated hour).
    for fold in (0, 1):
        until = datetime.combine(day, end, tzinfo=zone).replace(fold=fold).astimezone(UTC)
        if until > when:
            return until
    return until
