"""``flask calendar rotate-keys``: re-encrypt every stored calendar secret with the
current (first) key of ``CALENDAR_TOKEN_KEYS``, so older keys can then be removed."""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import AppGroup
from sqlalchemy import select

from recovery.availability.calendars.secrets import InvalidToken, box_from_config
from recovery.db import db
from recovery.models import CalendarConnection

calendar_cli = AppGroup("calendar", help="Calendar sync: connections and their secrets.")


def rotate_keys(session, box) -> tuple[int, list[int]]:
    """(re-encrypted, ids no key opens). Rows are locked so a sync or reconnect in the
    meantime cannot write back a secret under the old key."""
    rotated, unreadable = 0, []
    rows = session.scalars(
        select(CalendarConnection).order_by(CalendarConnection.id).with_for_update()
    ).all()
    for conn in rows:
        try:
            conn.secret = box.rotate(conn.secret)
        except InvalidToken:
            unreadable.append(conn.id)
            continue
        rotated += 1
    session.flush()
    return rotated, unreadable


@calendar_cli.command("rotate-keys")
def rotate_keys_command() -> None:
    box = box_from_config(current_app.config)
    if box is None:
        raise click.ClickException("CALENDAR_TOKEN_KEYS is not set: nothing to rotate with.")
    rotated, unreadable = rotate_keys(db.session, box)
    db.session.commit()
    click.echo(f"re-encrypted {rotated} calendar secret(s) with the current key")
    if unreadable:
        ids = ", ".join(map(str, unreadable))
        raise click.ClickException(
            f"no configured key opens connection(s) {ids}: they must be reconnected"
        )
