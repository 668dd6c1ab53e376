"""Profile of sending many texts at once: ``python -m bench.profile_send [N]``.

Seeds ``N`` offers already due (B4's shape: 20 openings per shop), lets the app's sweep
offer every opening to its next customer (unprofiled), then sends the ``N`` offer texts
through the real send job (``jobs.tasks.send_message``, ``SEND_BATCH`` at a time, its
provider calls ``SEND_CONCURRENCY`` at a time) in this process under pyinstrument,
against the fake Twilio API in its own process. The sender rate is off, so what is
measured is the work per text, not a number's turn. The app is built as the workers
build it (``Stack.env()``). Prints wall and CPU time per text and the top of the profile.

Set ``BENCH_DB_NAME`` and ``BENCH_REDIS_URL`` to keep out of other runs' way.
"""

from __future__ import annotations

import sys
import time

from pyinstrument import Profiler
from redis import Redis
from sqlalchemy import select

from bench import data
from bench.profile_sweep import figures
from bench.stack import REDIS_URL, ROOT, Stack, driver_app, migrate, recreate_database


def run(offers: int, top_lines: int = 50) -> dict:
    from app import create_app
    from jobs import tasks
    from jobs.sending import SEND_BATCH
    from recovery import config
    from recovery.db import db, utcnow
    from recovery.models import Message, MessageStatus
    from recovery.sweep import sweep

    recreate_database()
    seeder = driver_app()
    migrate(seeder)
    conn = data.connect()
    data.seed_due_offers(seeder, conn, offers)
    conn.close()

    stack = Stack(extra_env={"SMS_SENDER_RATE": "0"})
    stack.start_fake_twilio()
    try:
        app = create_app(config.from_environment(stack.env(), ROOT / "instance"))
        with app.app_context():
            sweep(db.session, utcnow, max_batches=10_000)
            db.session.commit()
            ids = db.session.scalars(
                select(Message.id)
                .where(Message.status == MessageStatus.QUEUED, Message.purpose == "offer")
                .order_by(Message.id)
            ).all()
            db.session.remove()
        Redis.from_url(REDIS_URL).flushdb()
        batches = [ids[i : i + SEND_BATCH] for i in range(0, len(ids), SEND_BATCH)]
        profiler = Profiler(interval=0.0005)
        with app.app_context():
            # One batch unmeasured: imports, the statement cache, the HTTP pool.
            tasks.send_message(*batches[0])
            wall, cpu = time.perf_counter(), time.process_time()
            profiler.start()
            for batch in batches[1:]:
                tasks.send_message(*batch)
            profiler.stop()
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            sent = db.session.scalar(
                select(db.func.count()).where(
                    Message.id.in_(ids), Message.status == MessageStatus.SENT
                )
            )
            db.session.remove()
    finally:
        for proc in stack.procs:
            proc.stop()
        Redis.from_url(REDIS_URL).flushdb()
    measured = sum(len(b) for b in batches[1:])
    return {
        "texts": measured,
        "sent": sent,
        **figures(profiler, wall, cpu, measured, "text", top_lines),
    }


def main() -> None:
    result = run(int(sys.argv[1]) if len(sys.argv) > 1 else 2_000)
    print(result["profile_text"])
    print({k: v for k, v in result.items() if k != "profile_text"})


if __name__ == "__main__":
    main()
