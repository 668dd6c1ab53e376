"""The database extension, the session class and column types shared by every model."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from flask import current_app, has_app_context
from flask_sqlalchemy import SQLAlchemy
from flask_sqlalchemy.session import Session as FlaskSession
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

# Stable constraint names, so migrations can refer to them on every database.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class RecoverySession(FlaskSession):
    """Flask-SQLAlchemy's session, which can also join an outside connection.

    Flask-SQLAlchemy always picks the engine; when a session is explicitly bound to a
    ``Connection`` (the test harness's outer transaction) that connection wins.
    """

    def get_bind(self, mapper=None, clause=None, bind=None, **kwargs):
        if bind is None and isinstance(self.bind, sa.engine.Connection):
            return self.bind
        return super().get_bind(mapper=mapper, clause=clause, bind=bind, **kwargs)


db = SQLAlchemy(
    metadata=sa.MetaData(naming_convention=NAMING_CONVENTION),
    session_options={"class_": RecoverySession},
)


def try_insert(session, row):
    """Add and flush ``row`` inside a savepoint; None if a constraint refused it.

    The rest of the transaction stands, so the caller can react (reuse what won, pick
    someone else, answer "taken").
    """
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
    except IntegrityError:
        return None
    return row


def dialect_insert(session, model):
    """The database's own ``INSERT`` construct, for ``ON CONFLICT`` (PostgreSQL and
    SQLite spell it the same way; SQLAlchemy's generic insert has no such clause)."""
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(model)
    return sqlite.insert(model)


CLOCK_EXTENSION = "recovery.clock"


def utcnow() -> datetime:
    """Now, in UTC. An app may carry its own clock (tests travel in time with it)."""
    if has_app_context():
        clock = current_app.extensions.get(CLOCK_EXTENSION)
        if clock is not None:
            return clock()
    return datetime.now(UTC)


class UTCDateTime(sa.types.TypeDecorator):
    """``timestamptz`` on PostgreSQL; always an aware UTC ``datetime`` in Python.

    SQLite has no time zones, so values are stored as naive UTC there and given their
    zone back on the way out. A naive value on the way in is a bug and is refused.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime refused: pass an aware datetime (UTC)")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def lock_row(session, model, ident: int):
    """``SELECT ... FOR UPDATE`` one row, fresh from the database (not the session cache)."""
    return session.scalar(
        sa.select(model)
        .where(model.id == ident)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
