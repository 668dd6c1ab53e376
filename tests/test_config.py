from pathlib import Path

import pytest

from app import create_app
from recovery.config import REQUIRED_IN_PRODUCTION, ConfigError, from_environment

FULL_PRODUCTION = {
    "APP_ENV": "production",
    "SECRET_KEY": "s3cret",
    "DATABASE_URL": "postgres://u:p@db.example:5432/shop",
    "REDIS_URL": "redis://cache.example:6379/0",
    "TWILIO_ACCOUNT_SID": "AC123",
    "TWILIO_AUTH_TOKEN": "token",
    "TWILIO_FROM_NUMBER": "+447700900000",
    "STRIPE_SECRET_KEY": "sk_live_x",
    "STRIPE_WEBHOOK_SECRET": "whsec_x",
    "STRIPE_PUBLISHABLE_KEY": "pk_live_x",
    "PUBLIC_BASE_URL": "https://slots.example.com",
}


def test_heroku_postgres_url_uses_psycopg3(tmp_path: Path):
    cfg = from_environment(FULL_PRODUCTION, tmp_path)
    assert cfg["SQLALCHEMY_DATABASE_URI"] == "postgresql+psycopg://u:p@db.example:5432/shop"


def test_plain_postgresql_url_uses_psycopg3(tmp_path: Path):
    cfg = from_environment({"DATABASE_URL": "postgresql://h/db"}, tmp_path)
    assert cfg["SQLALCHEMY_DATABASE_URI"] == "postgresql+psycopg://h/db"


@pytest.mark.parametrize("missing", REQUIRED_IN_PRODUCTION)
def test_production_names_each_missing_variable(tmp_path: Path, missing: str):
    env = {k: v for k, v in FULL_PRODUCTION.items() if k != missing}
    with pytest.raises(ConfigError) as err:
        from_environment(env, tmp_path)
    assert missing in str(err.value)


def test_production_with_everything_set_starts(tmp_path: Path):
    cfg = from_environment(FULL_PRODUCTION, tmp_path)
    assert cfg["APP_ENV"] == "production"
    assert cfg["SESSION_COOKIE_SECURE"] is True


def test_create_app_refuses_production_without_secrets(monkeypatch):
    for name in FULL_PRODUCTION:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("APP_ENV", "production")
    monkeypatch.setenv("DATABASE_URL", "postgres://h/db")
    with pytest.raises(ConfigError) as err:
        create_app()
    message = str(err.value)
    assert "SECRET_KEY" in message and "REDIS_URL" in message and "DATABASE_URL" not in message


def test_embedded_default_needs_nothing(tmp_path: Path):
    cfg = from_environment({}, tmp_path)
    assert cfg["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{tmp_path / 'slot_recovery.sqlite3'}"
    assert cfg["REDIS_URL"] is None
    assert cfg["TWILIO_ACCOUNT_SID"] is None and cfg["STRIPE_SECRET_KEY"] is None
    # A random key, kept so sessions survive a restart, and reused the second time.
    assert len(cfg["SECRET_KEY"]) == 64
    assert from_environment({}, tmp_path)["SECRET_KEY"] == cfg["SECRET_KEY"]


def test_unknown_app_env_is_refused(tmp_path: Path):
    with pytest.raises(ConfigError, match="APP_ENV"):
        from_environment({"APP_ENV": "staging"}, tmp_path)


def test_sweep_interval_defaults_to_a_minute_and_must_be_whole_seconds(tmp_path: Path):
    assert from_environment({}, tmp_path)["SWEEP_INTERVAL_SECONDS"] == 60
    assert (
        from_environment({"SWEEP_INTERVAL_SECONDS": "2"}, tmp_path)["SWEEP_INTERVAL_SECONDS"] == 2
    )
    for bad in ("0", "-5", "1.5", "soon"):
        with pytest.raises(ConfigError, match="SWEEP_INTERVAL_SECONDS"):
            from_environment({"SWEEP_INTERVAL_SECONDS": bad}, tmp_path)


@pytest.mark.parametrize("url", ["http://slots.example.com", "slots.example.com", "ftp://x"])
def test_production_refuses_a_public_url_that_is_not_https(tmp_path: Path, url: str):
    """Customers' pay and manage links are built from it: never plain http or a guess."""
    with pytest.raises(ConfigError, match="PUBLIC_BASE_URL must be the public https://"):
        from_environment(FULL_PRODUCTION | {"PUBLIC_BASE_URL": url}, tmp_path)


def test_bodies_are_bounded_to_one_megabyte(tmp_path: Path):
    assert from_environment(FULL_PRODUCTION, tmp_path)["MAX_CONTENT_LENGTH"] == 1024 * 1024
