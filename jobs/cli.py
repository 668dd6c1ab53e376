"""``flask jobs ...`` (schedule registration) and ``flask demo`` (the embedded default)."""

from __future__ import annotations

import threading

import click
from flask import current_app
from flask.cli import with_appcontext
from flask_migrate import upgrade
from werkzeug.serving import run_simple

from jobs import tasks
from jobs.connection import scheduler_for
from jobs.schedule import register
from recovery import loop
from recovery.db import db
from recovery.demo import seed_demo
from recovery.effects import DISPATCHER_EXTENSION
from recovery.timeline import opening_timeline

jobs_cli = click.Group("jobs", help="Background jobs.")


@jobs_cli.command("register")
@with_appcontext
def register_schedule() -> None:
    """Register the periodic jobs with rq-scheduler (idempotent: run at every start)."""
    ids = register(scheduler_for(current_app))
    click.echo("periodic jobs registered: " + ", ".join(ids))


@click.command("release")
@with_appcontext
def release_cli() -> None:
    """Once per deploy: migrate the database and register the periodic jobs."""
    upgrade()
    click.echo("database migrated")
    if current_app.config["REDIS_URL"]:
        ids = register(scheduler_for(current_app))
        click.echo("periodic jobs registered: " + ", ".join(ids))
    if current_app.config["RUNNING_UNDER_HONCHO"]:
        # honcho stops every process when one exits; a platform's release phase needs
        # this one to exit. So only under honcho does it stay, idle, after its work.
        click.echo("release done; idling so honcho keeps the other processes running")
        threading.Event().wait()


@click.command("demo")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True)
@click.option("--serve/--no-serve", default=True, help="Serve after seeding.")
@with_appcontext
def demo_cli(host: str, port: int, serve: bool) -> None:
    """Migrate, seed the demo shop (idempotent) and serve the embedded demo."""
    app = current_app._get_current_object()
    if app.config["APP_ENV"] == "production":
        raise click.UsageError("The demo is not for production.")
    upgrade()
    login = seed_demo(db.session)
    db.session.commit()
    click.echo(f"Demo shop ready. Log in as {login.email} / {login.password}")
    if not serve:
        return
    dispatcher = app.extensions[DISPATCHER_EXTENSION]
    if hasattr(dispatcher, "start"):
        dispatcher.start()
    click.echo(f"Serving on http://{host}:{port}/admin/  (Ctrl+C to stop)")
    # Flask refuses app.run() inside its own CLI; serve with Werkzeug directly.
    run_simple(host, port, app, threaded=True, use_reloader=False)


recovery_cli = click.Group("recovery", help="Operate the slot recovery loop.")


@recovery_cli.command("sweep")
@with_appcontext
def sweep_command() -> None:
    """Run the periodic sweep now (expire due offers, restart idle openings, ...)."""
    click.echo(tasks.sweep())


@recovery_cli.command("offer-next")
@click.argument("opening_id", type=int)
@with_appcontext
def offer_next_command(opening_id: int) -> None:
    """Offer an opening to its next eligible customer now."""
    outcome = loop.offer_next(db.session, opening_id)
    db.session.commit()
    click.echo(f"opening {opening_id}: {outcome}")


@recovery_cli.command("cancel")
@click.argument("appointment_id", type=int)
@click.option("--reason", default="cancelled from the command line")
@with_appcontext
def cancel_command(appointment_id: int, reason: str) -> None:
    """Cancel a booking; a paid future one opens a slot for recovery."""
    try:
        result = loop.cancel_appointment(db.session, appointment_id, reason=reason)
    except (loop.NotFound, loop.InvalidTransition) as exc:
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
