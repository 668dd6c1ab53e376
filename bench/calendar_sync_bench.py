"""Calendar sync cost: one Google calendar with 1,000 events in its 60-day window, synced
through the real Google client against the fake Google on loopback, on PostgreSQL.

Reports wall time and SQL statements (a ``before_cursor_execute`` listener) for the first
(full) sync and for a repeated sync that changes nothing. Run:
``.venv/bin/python -m bench.calendar_sync_bench`` (PostgreSQL on 127.0.0.1 as for tests).
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta

from cryptography.fernet import Fernet
from flask_migrate import upgrade
from sqlalchemy import event

from app import create_app
from recovery.availability.calendars.secrets import SecretBox
from recovery.availability.calendars.sync import Providers, sync_connection
from recovery.db import db
from recovery.models import CalendarConnection, Resource, Shop
from tests.conftest import app_config, recreate_database
from tests.fake_google import CLIENT_ID, CLIENT_SECRET, FakeGoogle

EVENTS = 1000
NOW = datetime(2026, 1, 12, 9, 0, tzinfo=UTC)


def main() -> None:
    os.environ.setdefault("OAUTHLIB_INSECURE_TRANSPORT", "1")
    key = Fernet.generate_key().decode()
    url = recreate_database(os.environ.get("BENCH_DB_NAME", "slot_recovery_bench_calendar"))
    with FakeGoogle(page_size=2500) as fake:
        app = create_app(
            app_config(
                url,
                REDIS_URL=None,
                GOOGLE_CLIENT_ID=CLIENT_ID,
                GOOGLE_CLIENT_SECRET=CLIENT_SECRET,
                CALENDAR_TOKEN_KEYS=(key,),
                GOOGLE_OAUTH_BASE_URL=fake.base_url,
                GOOGLE_CALENDAR_BASE_URL=fake.base_url,
            )
        )
        with app.app_context():
            upgrade()
            shop = Shop(name="Bench", sms_from_number="+447700900123")
            db.session.add(shop)
            db.session.flush()
            chair = Resource(shop_id=shop.id, name="Sam")
            db.session.add(chair)
            db.session.flush()
            fake.refresh_tokens["1//bench"] = True
            conn = CalendarConnection(
                shop_id=shop.id,
                resource_id=chair.id,
                provider="google",
                secret=SecretBox([key]).encrypt("1//bench"),
            )
            db.session.add(conn)
            db.session.commit()
            step = timedelta(days=59) / EVENTS
            for n in range(EVENTS):
                start = NOW + timedelta(hours=1) + step * n
                fake.put(f"ev{n:05d}", start, start + timedelta(minutes=30))
            providers = Providers.from_config(app.config)
            statements = []
            event.listen(
                db.engine, "before_cursor_execute", lambda *a, **k: statements.append(a[2])
            )
            for label in ("first (full) sync", "repeated sync"):
                statements.clear()
                started = time.perf_counter()
                result = sync_connection(db.session, conn.id, providers, NOW)
                db.session.commit()
                wall = time.perf_counter() - started
                print(
                    f"{label}: {wall:.3f} s wall, {len(statements)} SQL statements, "
                    f"{len(result.changed_block_ids)} blocks written, outcome {result.outcome}"
                )
            db.session.remove()
            db.engine.dispose()


if __name__ == "__main__":
    main()
