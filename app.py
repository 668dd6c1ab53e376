"""Application factory. Nothing is built at import time: call ``create_app()``.

``gunicorn "app:create_app()"`` serves it; ``flask --app app ...`` runs its commands.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from flask import Flask, Request, request
from flask.sessions import SecureCookieSessionInterface
from flask_migrate import Migrate
from flask_wtf.csrf import CSRFProtect
from werkzeug.middleware.proxy_fix import ProxyFix

from recovery import config
from recovery.db import db
from recovery.effects import DISPATCHER_EXTENSION

migrate = Migrate()
csrf = CSRFProtect()


def create_app(overrides: dict[str, Any] | None = None) -> Flask:
    app = Flask(__name__, instance_relative_config=True)
    app.config.update(config.from_os(Path(app.instance_path)))
    app.config.update(overrides or {})
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # The embedded server's request log, like gunicorn's (gunicorn.conf.py), names the
    # route of a customer link, never its token.
    logging.getLogger("werkzeug").addFilter(_redact_link_tokens)

    app.session_interface = _NoSessionForWebhooks()
    app.config["SQLALCHEMY_ENGINE_OPTIONS"] = _engine_options(app.config)
    db.init_app(app)
    migrate.init_app(app, db, directory=str(Path(__file__).parent / "migrations"))
    csrf.init_app(app)
    _init_proxy(app)

    _init_jobs(app)
    _init_blueprints(app)

    from admin import init_admin

    init_admin(app)
    _init_throttle(app)
    _init_cli(app)
    return app


def _redact_link_tokens(record: logging.LogRecord) -> bool:
    from recovery.links import redact_tokens

    if isinstance(record.args, tuple):
        record.args = tuple(redact_tokens(a) if isinstance(a, str) else a for a in record.args)
    return True


def _init_proxy(app: Flask) -> None:
    """Behind a router (Heroku's is one hop) the client's address is the one the last
    trusted hop appended to X-Forwarded-For. With 0 hops no header is believed: anyone
    can send one, and the sign-in throttle counts per address (admin/throttle.py)."""
    hops = app.config["TRUSTED_PROXY_HOPS"]
    if hops:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops)


# Providers' webhooks (Twilio's and Stripe's blueprints). They are authenticated by the
# provider's signature and never sent by a browser: no cookie, session, sign-in, CSRF
# token or sign-in throttle applies to them, and each of those costs CPU on every call
# (BENCHMARKS.md, B3). Security headers and the body limit still apply.
WEBHOOKS_PREFIX = "/webhooks/"


def is_webhook(req: Request) -> bool:
    return req.path.startswith(WEBHOOKS_PREFIX)


class _NoSessionForWebhooks(SecureCookieSessionInterface):
    """Flask's signed-cookie session, except that a webhook gets the empty null session
    (reads find nothing, writes fail) instead of a cookie being looked for and parsed,
    and no ``Vary: Cookie``. Decided by path: the session opens before the URL is
    matched to a blueprint."""

    def open_session(self, app: Flask, req: Request):
        if is_webhook(req):
            return self.make_null_session(app)
        return super().open_session(app, req)


def _init_throttle(app: Flask) -> None:
    from admin.auth import bp as auth_bp
    from admin.throttle import init_throttle
    from admin.two_factor import bp as two_factor_bp

    # Backoff per account and address, and a route-level ceiling on the sign-in POSTs.
    limiter = init_throttle(app, auth_bp, two_factor_bp)
    # No limit applies to webhooks: skip resolving the limits of every call.
    limiter.request_filter(lambda: is_webhook(request))


def _engine_options(cfg: dict) -> dict:
    if cfg["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        # The embedded mode writes from the request thread and the job thread: wait for
        # the other writer instead of failing with "database is locked".
        return {"connect_args": {"timeout": 30}}
    return {
        # pre_ping: a PostgreSQL restart costs one reconnect, not a failed request.
        "pool_pre_ping": True,
        "pool_size": 5,
        "max_overflow": 5,
        # psycopg prepares a statement after five runs, and PostgreSQL may then reuse one
        # generic plan for every opening and time: the eligibility query got ~10x slower
        # (BENCHMARKS.md, B5). Plan each execution for its own parameters.
        "connect_args": {"options": "-c plan_cache_mode=force_custom_plan"},
    }


def _init_jobs(app: Flask) -> None:
    from jobs.dispatch import RQDispatcher, ThreadDispatcher

    if app.config["REDIS_URL"]:
        app.extensions[DISPATCHER_EXTENSION] = RQDispatcher(app)
        return
    dispatcher = ThreadDispatcher(app)
    app.extensions[DISPATCHER_EXTENSION] = dispatcher

    # The embedded mode has no worker process: the job thread starts with the first
    # request (the demo command starts it at once), not at import or in CLI commands.
    @app.before_request
    def _start_job_thread() -> None:
        if app.extensions.get(DISPATCHER_EXTENSION) is dispatcher:
            dispatcher.start()


def _init_blueprints(app: Flask) -> None:
    from recovery.http.health import bp as health_bp
    from recovery.http.manage import bp as manage_bp
    from recovery.http.pay import bp as pay_bp
    from recovery.http.stripe import bp as stripe_bp
    from recovery.http.twilio import bp as twilio_bp

    app.register_blueprint(health_bp)
    app.register_blueprint(pay_bp)
    app.register_blueprint(manage_bp)
    app.register_blueprint(twilio_bp)
    app.register_blueprint(stripe_bp)
    # Webhooks are authenticated by their provider's signature instead of a CSRF token.
    csrf.exempt(twilio_bp)
    csrf.exempt(stripe_bp)
    # The manage page sends no referrer, which the app-wide check refuses over HTTPS: its
    # forms check their own CSRF token instead (recovery/http/manage.py).
    csrf.exempt(manage_bp)

    from recovery.http.limits import init_limits
    from recovery.http.security import init_security

    # 413 for bodies over MAX_CONTENT_LENGTH, before anything reads them.
    init_limits(app)

    # Security headers and the Content Security Policy on every response, static files
    # and errors included.
    init_security(app)


def _init_cli(app: Flask) -> None:
    from admin.cli import staff_cli
    from jobs.cli import jobs_cli, release_cli
    from recovery.availability.calendars.cli import calendar_cli
    from recovery.cli import recovery_cli
    from recovery.demo.cli import demo_cli

    app.cli.add_command(demo_cli)
    app.cli.add_command(release_cli)
    app.cli.add_command(recovery_cli)
    app.cli.add_command(jobs_cli)
    app.cli.add_command(staff_cli)
    app.cli.add_command(calendar_cli)
