"""``flask jobs register``, ``flask jobs scheduler`` (the Procfile's scheduler) and
``flask release`` (the Procfile's release phase)."""

from __future__ import annotations

import threading

import click
from flask import current_app
from flask.cli import with_appcontext
from flask_migrate import upgrade

from jobs.connection import queue_for, redis_for, scheduler_for
from jobs.schedule import PeriodicScheduler, register, schedule_for
from recovery.memory import freeze_startup_objects

jobs_cli = click.Group("jobs", help="Background jobs.")


@jobs_cli.command("register")
@with_appcontext
def register_schedule() -> None:
    """Register the periodic jobs with rq-scheduler (idempotent)."""
    ids = register(scheduler_for(current_app), schedule_for(current_app.config))
    click.echo("periodic jobs registered: " + ", ".join(ids))


@jobs_cli.command("scheduler")
@click.option(
    "--interval", default=1.0, show_default=True, help="Seconds between passes over Redis."
)
@with_appcontext
def run_scheduler(interval: float) -> None:
    """The scheduler process: register the periodic jobs, then each pass move due jobs to
    the queue and register again any periodic job that Redis lost. One is active at a
    time (rq-scheduler's lock); more may run as standbys."""
    schedule = schedule_for(current_app.config)
    scheduler = PeriodicScheduler(
        schedule, queue=queue_for(current_app), connection=redis_for(current_app), interval=interval
    )
    ids = register(scheduler, schedule)
    click.echo("periodic jobs registered: " + ", ".join(ids))
    freeze_startup_objects()
    scheduler.run()


@click.command("release")
@with_appcontext
def release_cli() -> None:
    """Once per deploy: migrate the database and register the periodic jobs."""
    upgrade()
    click.echo("database migrated")
    if current_app.config["REDIS_URL"]:
        ids = register(scheduler_for(current_app), schedule_for(current_app.config))
        click.echo("periodic jobs registered: " + ", ".join(ids))
    if current_app.config["RUNNING_UNDER_HONCHO"]:
        # honcho stops every process when one exits; a platform's release phase needs
        # this one to exit. So only under honcho does it stay, idle, after its work.
        click.echo("release done; idling so honcho keeps the other processes running")
        threading.Event().wait()
