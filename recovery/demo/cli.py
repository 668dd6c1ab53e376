"""``flask demo``: migrate, seed the demo shop (idempotent) and serve the embedded default."""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import with_appcontext
from flask_migrate import upgrade
from werkzeug.serving import run_simple

from recovery.db import db
from recovery.demo.seed import seed_demo
from recovery.effects import DISPATCHER_EXTENSION


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
