"""Profile of the sweep catching up after an outage: ``python -m bench.profile_sweep [N]``.

Seeds ``N`` offers already due (as B4 does: 20 openings per shop, their exact-time jobs
lost), then runs the app's own sweep in this process under pyinstrument, with the real
RQ dispatcher (jobs go to Redis; no worker takes them, so only the sweep is measured).
Prints the wall and CPU time and the top of the profile; ``run`` returns them for
``python -m bench``.
"""

from __future__ import annotations

import sys
import time

from pyinstrument import Profiler
from redis import Redis

from bench import data
from bench.stack import REDIS_URL, driver_app, migrate, recreate_database


def run(app, offers: int) -> dict:
    from recovery.db import db, utcnow
    from recovery.sweep import sweep

    conn = data.connect()
    data.seed_due_offers(app, conn, offers)
    conn.close()
    Redis.from_url(REDIS_URL).flushdb()
    profiler = Profiler(interval=0.0005)
    with app.app_context():
        wall, cpu = time.perf_counter(), time.process_time()
        profiler.start()
        totals = sweep(db.session, utcnow, max_batches=10_000)
        profiler.stop()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        db.session.remove()
    Redis.from_url(REDIS_URL).flushdb()
    return {"offers": offers, "totals": totals, **figures(profiler, wall, cpu, offers, "offer")}


def figures(profiler: Profiler, wall: float, cpu: float, count: int, per: str, top_lines=45):
    """A profiled pass's wall and CPU seconds, CPU ms per ``per``, the profile's top."""
    text = profiler.output_text(unicode=False, color=False, show_all=False)
    return {
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
        f"cpu_ms_per_{per}": round(cpu * 1000 / max(1, count), 2),
        "profile_text": "\n".join(text.splitlines()[:top_lines]),
    }


def main() -> None:
    offers = int(sys.argv[1]) if len(sys.argv) > 1 else 2_000
    recreate_database()
    app = driver_app()
    migrate(app)
    result = run(app, offers)
    print(result["profile_text"])
    print({k: v for k, v in result.items() if k != "profile_text"})


if __name__ == "__main__":
    main()
