"""The one place that reads the process environment.

Everything else reads ``app.config``. Tests pass overrides to ``create_app`` instead of
touching ``os.environ``.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path

# Every variable the app reads, with a one-line meaning (also in .env.example).
VARIABLES: dict[str, str] = {
    "APP_ENV": "development (default: embedded demo) or production",
    "SECRET_KEY": "signs sessions and CSRF tokens; required in production",
    "SECRET_KEY_FALLBACKS": "comma-separated earlier SECRET_KEYs, still accepted while rotating",
    "DATABASE_URL": "PostgreSQL URL (postgres:// accepted); default SQLite under instance/",
    "REDIS_URL": "Redis URL for RQ jobs and slot locks; default: jobs run in-process",
    "TWILIO_ACCOUNT_SID": "Twilio account; without it SMS goes to the sandbox outbox",
    "TWILIO_AUTH_TOKEN": "Twilio auth token; also verifies inbound webhook signatures",
    "TWILIO_FROM_NUMBER": "default sender number (E.164) for shops without their own",
    "STRIPE_SECRET_KEY": "Stripe secret key; without it payments use the sandbox gateway",
    "STRIPE_WEBHOOK_SECRET": "Stripe webhook signing secret (whsec_...)",
    "STRIPE_PUBLISHABLE_KEY": "Stripe publishable key (pk_...) for the payment page's card form",
    "PUBLIC_BASE_URL": "public https URL of the web process, for links and signature checks; "
    "required in production",
    "TWILIO_API_BASE_URL": "testing only: send Twilio REST calls to a local fake server",
    "STRIPE_API_BASE_URL": "testing only: send Stripe API calls to a local fake server",
    "GOOGLE_CLIENT_ID": "Google OAuth client id; with the secret and keys, staff connect calendars",
    "GOOGLE_CLIENT_SECRET": "Google OAuth client secret (a web application client)",
    "CALENDAR_TOKEN_KEYS": "comma-separated Fernet keys for calendar secrets; the first encrypts",
    "GOOGLE_OAUTH_BASE_URL": "testing only: send Google OAuth calls to a local fake server",
    "GOOGLE_CALENDAR_BASE_URL": "testing only: send Google Calendar calls to a local fake server",
    "CALENDAR_FEED_ALLOW_PRIVATE": "testing only: let iCal feeds come from loopback/private hosts",
    "HONCHO_PROCESS_NAME": "set by honcho; keeps `release` alive so honcho runs all four",
    "TRUSTED_PROXY_HOPS": "proxies in front of web whose X-Forwarded-For is believed; "
    "default 1 in production (Heroku's router), 0 otherwise",
    "STAFF_IDLE_MINUTES": "minutes without a request before staff are signed out; default 720",
    "SWEEP_INTERVAL_SECONDS": "seconds between sweeps; /healthz fails after 3 without one; "
    "default 60",
    "SMS_SENDER_RATE": "texts per second from one sender number, across all workers; default 1 "
    "(a Twilio long code); 0 turns the limit off",
    "SEND_CONCURRENCY": "texts in flight at once in each worker; default 16",
}

REQUIRED_IN_PRODUCTION = (
    "SECRET_KEY",
    "DATABASE_URL",
    "REDIS_URL",
    "TWILIO_ACCOUNT_SID",
    "TWILIO_AUTH_TOKEN",
    "TWILIO_FROM_NUMBER",
    "STRIPE_SECRET_KEY",
    "STRIPE_WEBHOOK_SECRET",
    "STRIPE_PUBLISHABLE_KEY",
    "PUBLIC_BASE_URL",
)

# Request bodies above this are refused with 413 before they are read: webhooks and forms
# are small, and an unbounded body would grow a web process by its size.
MAX_CONTENT_LENGTH = 1024 * 1024


# Twilio sends one message segment per second from a US long code and queues the rest
# (https://www.twilio.com/docs/api/errors/30001); other countries and number types allow
# more, so a deployment raises it for its numbers.
DEFAULT_SMS_SENDER_RATE = 1.0


class ConfigError(RuntimeError):
    """The environment cannot produce a safe configuration."""


def normalize_database_url(url: str) -> str:
    """Accept Heroku's ``postgres://`` and plain ``postgresql://`` and use psycopg 3."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def _text(environ: Mapping[str, str], name: str) -> str | None:
    value = environ.get(name, "").strip()
    return value or None


def _key_list(value: str | None) -> tuple[str, ...]:
    """A comma-separated list of keys, e.g. ``CALENDAR_TOKEN_KEYS`` (current key first)."""
    return tuple(k.strip() for k in (value or "").split(",") if k.strip())


def _positive_whole(
    environ: Mapping[str, str], name: str, default: int, unit: str = "minutes"
) -> int:
    raw = _text(environ, name)
    if raw is None:
        return default
    try:
        number = int(raw)
    except ValueError:
        number = 0
    if number < 1:
        raise ConfigError(f"{name} must be a whole number of {unit}, at least 1, not {raw!r}")
    return number


def _rate(environ: Mapping[str, str], name: str, default: float) -> float:
    raw = _text(environ, name)
    if raw is None:
        return default
    try:
        rate = float(raw)
    except ValueError:
        rate = -1.0
    if not 0 <= rate < float("inf"):
        raise ConfigError(f"{name} must be a number of texts per second (0: no limit), not {raw!r}")
    return rate


def _proxy_hops(environ: Mapping[str, str], production: bool) -> int:
    """How many proxies' X-Forwarded-For entries to believe (Werkzeug's ProxyFix).

    Heroku's router is one hop. Without a proxy it must be 0, or any client could choose
    its own address (the sign-in throttle counts per address)."""
    raw = _text(environ, "TRUSTED_PROXY_HOPS")
    if raw is None:
        return 1 if production else 0
    if not (raw.isascii() and raw.isdigit()):
        raise ConfigError(f"TRUSTED_PROXY_HOPS must be a whole number, 0 or more, not {raw!r}")
    return int(raw)


def _embedded_secret_key(instance_path: Path) -> str:
    """A random key kept under instance/ so demo logins survive a restart."""
    instance_path.mkdir(parents=True, exist_ok=True)
    key_file = instance_path / "secret_key"
    if not key_file.exists():
        key_file.write_text(secrets.token_hex(32))
        key_file.chmod(0o600)
    return key_file.read_text().strip()


def from_environment(environ: Mapping[str, str], instance_path: Path) -> dict:
    """Build the Flask config dict from environment variables.

    Raises ``ConfigError`` naming every missing variable when production is asked for.
    """
    app_env = (_text(environ, "APP_ENV") or "development").lower()
    if app_env not in ("development", "production"):
        raise ConfigError(f"APP_ENV must be 'development' or 'production', not {app_env!r}")
    production = app_env == "production"

    if production:
        missing = [name for name in REQUIRED_IN_PRODUCTION if not _text(environ, name)]
        if missing:
            raise ConfigError(
                "Refusing to start in production: missing environment variable(s): "
                + ", ".join(missing)
            )
        # Customers' pay and manage links and the Twilio signature check use it, so it
        # must be the real public https address, never a guess from request headers.
        if not (_text(environ, "PUBLIC_BASE_URL") or "").lower().startswith("https://"):
            raise ConfigError(
                "Refusing to start in production: PUBLIC_BASE_URL must be the public "
                "https:// address of the web process"
            )

    idle_minutes = _positive_whole(environ, "STAFF_IDLE_MINUTES", 12 * 60)
    database_url = _text(environ, "DATABASE_URL")
    if database_url is None:
        database_url = f"sqlite:///{instance_path / 'slot_recovery.sqlite3'}"

    return {
        "APP_ENV": app_env,
        "SECRET_KEY": _text(environ, "SECRET_KEY") or _embedded_secret_key(instance_path),
        # Rotation: the old key moves here; sessions and two-factor secrets made with it
        # still read, and two-factor secrets are re-encrypted with the new key on use.
        "SECRET_KEY_FALLBACKS": list(_key_list(_text(environ, "SECRET_KEY_FALLBACKS"))),
        "SQLALCHEMY_DATABASE_URI": normalize_database_url(database_url),
        "REDIS_URL": _text(environ, "REDIS_URL"),
        "TWILIO_ACCOUNT_SID": _text(environ, "TWILIO_ACCOUNT_SID"),
        "TWILIO_AUTH_TOKEN": _text(environ, "TWILIO_AUTH_TOKEN"),
        "TWILIO_FROM_NUMBER": _text(environ, "TWILIO_FROM_NUMBER"),
        "TWILIO_API_BASE_URL": _text(environ, "TWILIO_API_BASE_URL"),
        "STRIPE_SECRET_KEY": _text(environ, "STRIPE_SECRET_KEY"),
        "STRIPE_WEBHOOK_SECRET": _text(environ, "STRIPE_WEBHOOK_SECRET"),
        "STRIPE_PUBLISHABLE_KEY": _text(environ, "STRIPE_PUBLISHABLE_KEY"),
        "STRIPE_API_BASE_URL": _text(environ, "STRIPE_API_BASE_URL"),
        "PUBLIC_BASE_URL": (_text(environ, "PUBLIC_BASE_URL") or "").rstrip("/") or None,
        # Calendar sync is optional: without these the feature is hidden, nothing refuses
        # to start (so they are not in REQUIRED_IN_PRODUCTION).
        "GOOGLE_CLIENT_ID": _text(environ, "GOOGLE_CLIENT_ID"),
        "GOOGLE_CLIENT_SECRET": _text(environ, "GOOGLE_CLIENT_SECRET"),
        "CALENDAR_TOKEN_KEYS": _key_list(_text(environ, "CALENDAR_TOKEN_KEYS")),
        "GOOGLE_OAUTH_BASE_URL": _text(environ, "GOOGLE_OAUTH_BASE_URL"),
        "GOOGLE_CALENDAR_BASE_URL": _text(environ, "GOOGLE_CALENDAR_BASE_URL"),
        "CALENDAR_FEED_ALLOW_PRIVATE": bool(_text(environ, "CALENDAR_FEED_ALLOW_PRIVATE")),
        "RUNNING_UNDER_HONCHO": bool(_text(environ, "HONCHO_PROCESS_NAME")),
        "TRUSTED_PROXY_HOPS": _proxy_hops(environ, production),
        # Staff sessions end after this long without a request (admin/sessions.py checks
        # it on the server); the session cookie expires with it (OWASP: idle timeout).
        "STAFF_IDLE_MINUTES": idle_minutes,
        "PERMANENT_SESSION_LIFETIME": timedelta(minutes=idle_minutes),
        # The periodic sweep's interval; /healthz counts the sweep as stopped after three
        # intervals without one (tests shorten it to watch a lost schedule come back).
        "SWEEP_INTERVAL_SECONDS": _positive_whole(environ, "SWEEP_INTERVAL_SECONDS", 60, "seconds"),
        "MAX_CONTENT_LENGTH": MAX_CONTENT_LENGTH,
        # Sending: each sender number's rate, shared by every worker through Redis
        # (recovery/messaging/pace.py), and how many texts one worker has in flight.
        "SMS_SENDER_RATE": _rate(environ, "SMS_SENDER_RATE", DEFAULT_SMS_SENDER_RATE),
        "SEND_CONCURRENCY": _positive_whole(environ, "SEND_CONCURRENCY", 16, "texts"),
        "SESSION_COOKIE_SECURE": production,
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
    }


def from_os(instance_path: Path) -> dict:
    return from_environment(os.environ, instance_path)
