"""``flask recovery ...``: operate the recovery loop from a shell."""

from __future__ import annotations

import click
from flask.cli import with_appcontext

from recovery.booking.cancellation import cancel_appointment
from recovery.db import db, utcnow
from recovery.errors import InvalidTransition, NotFound
from recovery.offers.offering import offer_next
from recovery.offers.timeline import opening_timeline
from recovery.sweep import sweep

recovery_cli = click.Group("recovery", help="Operate the slot recovery loop.")


@recovery_cli.command("sweep")
@with_appcontext
def sweep_command() -> None:
    """Run the periodic sweep now (expire due offers, restart idle openings, ...)."""
    click.echo(sweep(db.session, utcnow))


@recovery_cli.command("offer-next")
@click.argument("opening_id", type=int)
@with_appcontext
def offer_next_command(opening_id: int) -> None:
    """Offer an opening to its next eligible customer now."""
    outcome = offer_next(db.session, opening_id)
    db.session.commit()
    click.echo(f"opening {opening_id}: {outcome}")


@recovery_cli.command("cancel")
@click.argument("appointment_id", type=int)
@click.option("--reason", default="cancelled from the command line")
@with_appcontext
def cancel_command(appointment_id: int, reason: str) -> None:
    """Cancel a booking; a paid future one opens a slot for recovery."""
    try:
        result = cancel_appointment(db.session, appointment_id, reason=reason)
    except (NotFound, InvalidTransition) as exc:
        raise click.UsageError(str(exc)) from None
    db.session.commit()
    click.echo(f"appointment {appointment_id}: {result.note}")


@recovery_cli.command("status")
@click.argument("opening_id", type=int)
@with_appcontext
def status_command(opening_id: int) -> None:
    """Print an opening's timeline: offers, messages and outcome."""
    try:
        opening, entries = opening_timeline(db.session, opening_id)
    except LookupError as exc:
        raise click.UsageError(str(exc)) from None
    click.echo(
        f"opening #{opening.id}: {opening.status}, resource {opening.resource.name}, "
        f"{opening.starts_at:%Y-%m-%d %H:%M} UTC"
    )
    for entry in entries:
        click.echo(f"  {entry.at:%Y-%m-%d %H:%M:%S}  {entry.kind:<8} {entry.text}")
