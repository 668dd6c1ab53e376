"""``flask jobs register`` and ``flask release`` (the Procfile's release phase)."""

from __future__ import annotations

import threading

import click
from flask import current_app
from flask.cli import with_appcontext
from flask_migrate import upgrade

from jobs.connection import scheduler_for
from jobs.schedule import register

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
