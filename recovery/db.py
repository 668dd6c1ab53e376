"""The database extension, the session class and column types shared by every model."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from flask import current_app, has_app_context
from flask_sqlalchemy import SQLAlchemy
from flask_sqlalchemy.session import Session as FlaskSession
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

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


class local_date(FunctionElement):  # named like the SQL function it is
    """``local_date(ts, zone)``: the calendar day a UTC timestamp falls on in a time zone
    (an IANA name), so a query can group by the shop's days without reading every row."""

    type = sa.Date()
    name = "local_date"
    inherit_cache = True


class seconds_between(FunctionElement):  # named like the SQL function it is
    """``seconds_between(start, end)``: the seconds from one timestamp to another."""

    type = sa.Float()
    name = "seconds_between"
    inherit_cache = True


@compiles(local_date, "postgresql")
def _local_date_postgresql(element, compiler, **kw):
    ts, zone = (compiler.process(c, **kw) for c in element.clauses)
    return f"CAST(timezone({zone}, {ts}) AS DATE)"


@compiles(seconds_between, "postgresql")
def _seconds_between_postgresql(element, compiler, **kw):
    start, end = (compiler.process(c, **kw) for c in element.clauses)
    return f"CAST(EXTRACT(EPOCH FROM ({end} - {start})) AS DOUBLE PRECISION)"


# SQLite (the embedded mode) has neither time zones nor exact time arithmetic, so it gets
# both functions from Python, registered on each of its connections. It holds UTCDateTime
# values as naive UTC text (see UTCDateTime).
def _sqlite_instant(stored: str) -> datetime:
    return datetime.fromisoformat(stored).replace(tzinfo=UTC)


def _sqlite_local_date(stored: str | None, zone: str) -> str | None:
    if stored is None:
        return None
    return _sqlite_instant(stored).astimezone(ZoneInfo(zone)).date().isoformat()


def _sqlite_seconds_between(start: str | None, end: str | None) -> float | None:
    if start is None or end is None:
        return None
    return (_sqlite_instant(end) - _sqlite_instant(start)).total_seconds()


@compiles(local_date, "sqlite")
@compiles(seconds_between, "sqlite")
def _registered_in_sqlite(element, compiler, **kw):
    return f"{element.name}({compiler.process(element.clauses, **kw)})"


@sa.event.listens_for(sa.engine.Engine, "connect")
def _sqlite_functions(dbapi_connection, _record) -> None:
    if isinstance(dbapi_connection, sqlite3.Connection):
        dbapi_connection.create_function("local_date", 2, _sqlite_local_date, deterministic=True)
        dbapi_connection.create_function(
            "seconds_between", 2, _sqlite_seconds_between, deterministic=True
        )


def lock_row(session, model, ident: int):
    """``SELECT ... FOR UPDATE`` one row, fresh from the database (not the session cache)."""
    return session.scalar(
        sa.select(model)
        .where(model.id == ident)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
