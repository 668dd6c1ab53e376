"""``python -m bench [--quick] [--only B1,B3]``: run the benchmarks, print a table, save JSON.

A full run takes about 15 minutes on the 2-core reference machine; ``--quick`` runs every
benchmark small (about a minute) to check that the harness works. Results go to
``bench/results/<timestamp>.json`` and ``latest.json``; ``--write-doc`` also replaces the
results block in BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import psycopg
from redis import Redis

from bench import calendar_bench, eligibility_bench, loop_latency, sweep_bench, webhook_load
from bench.stack import PG_ADMIN_DSN, REDIS_URL, RESULTS, ROOT, Stack, recreate_database
from bench.stats import over_runs

FULL = {
    "runs": 3,
    "b1_samples": 100,
    "b2_samples": 100,
    "b3_rates": (50, 100, 200),
    "b3_seconds": 30,
    "b4_offers": 10_000,
    "b5_customers": 100_000,
    "b5_bookings": 1_000_000,
    "b5_iterations": 2_000,
    "b7_resources": 10,
    "b7_per_day": 30,
    "b7_requests": 30,
}
QUICK = {
    "runs": 1,
    "b1_samples": 10,
    "b2_samples": 10,
    "b3_rates": (50,),
    "b3_seconds": 3,
    "b4_offers": 200,
    "b5_customers": 5_000,
    "b5_bookings": 50_000,
    "b5_iterations": 100,
    "b7_resources": 3,
    "b7_per_day": 10,
    "b7_requests": 10,
}
TARGETS_MS = {"B1": 500, "B2": 2000, "B3": 50, "B4": 10_000, "B5": 20, "B8": 300}


def machine() -> dict:
    def run(cmd: list[str]) -> str:
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout
        except OSError:
            return ""

    lscpu = dict(
        line.split(":", 1) for line in run(["lscpu"]).splitlines() if ":" in line
    )  # fmt: skip
    meminfo = Path("/proc/meminfo").read_text().splitlines()[0].split()
    with psycopg.connect(PG_ADMIN_DSN) as conn:
        pg = conn.execute("SHOW server_version").fetchone()[0]
    redis_version = Redis.from_url(REDIS_URL).info("server")["redis_version"]
    return {
        "cpu": lscpu.get("Model name", "?").strip(),
        "cpus": lscpu.get("CPU(s)", "?").strip(),
        "memory_gib": round(int(meminfo[1]) / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "postgresql": pg,
        "redis": redis_version,
        "gunicorn": metadata.version("gunicorn"),
        "rq": metadata.version("rq"),
        "rq-scheduler": metadata.version("rq-scheduler"),
        "twilio": metadata.version("twilio"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--only", default="B1,B2,B3,B4,B5,B6,B8", help="comma-separated subset")
    parser.add_argument("--write-doc", action="store_true", help="update BENCHMARKS.md")
    parser.add_argument("--web-workers", type=int, default=3)
    parser.add_argument("--rq-workers", type=int, default=2)
    args = parser.parse_args()
    size = QUICK if args.quick else FULL
    only = {b.strip().upper() for b in args.only.split(",")}

    results: dict = {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "mode": "quick" if args.quick else "full",
        "machine": machine(),
        "setup": {"web_workers": args.web_workers, "web_threads": 4, "rq_workers": args.rq_workers},
        "size": {k: list(v) if isinstance(v, tuple) else v for k, v in size.items()},
    }
    recreate_database()
    app = bench_app()

    if "B5" in only:
        step("B5 eligibility")
        results["B5"] = eligibility_bench.run(
            app, size["b5_customers"], size["b5_bookings"], size["b5_iterations"]
        )
        app = fresh_database(app)  # the big shop is not part of the other benchmarks

    if "B8" in only:
        step("B8 calendar week view")
        results["B8"] = calendar_bench.run(
            app, size["b7_resources"], size["b7_per_day"], size["b7_requests"]
        )
        app = fresh_database(app)

    stack = Stack(web_workers=args.web_workers, rq_workers=args.rq_workers)
    try:
        if only & {"B1", "B2", "B3", "B4", "B6"}:
            step("starting gunicorn, rq workers, rqscheduler, fake Twilio")
            stack.start()
        if "B1" in only:
            step("B1 cancel -> first offer SMS")
            runs = [
                loop_latency.b1_cancel_to_offer(stack, app, size["b1_samples"], gap_s=0.2)
                for _ in range(size["runs"])
            ]
            results["B1"] = over_runs(runs)
        if "B2" in only:
            step("B2 expiry -> next offer SMS")
            runs = [
                loop_latency.b2_expiry_to_next_offer(stack, app, size["b2_samples"], gap_s=0.2)
                for _ in range(size["runs"])
            ]
            results["B2"] = over_runs(runs)
        if "B3" in only or "B6" in only:
            step("B3 inbound webhook load")
            webhook_load.warm_up(stack)
            results["B3"] = [
                webhook_load.run_rate(stack, app, rate, size["b3_seconds"])
                for rate in size["b3_rates"]
            ]
            wait_idle(stack)
            results["B6"] = stack.resident_memory()
        if "B4" in only:
            step("B4 sweep of due offers")
            wait_idle(stack)
            results["B4"] = sweep_bench.run(stack, app, size["b4_offers"])
    finally:
        stack.stop()

    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    for name in (f"{stamp}.json", "latest.json"):
        (RESULTS / name).write_text(json.dumps(results, indent=2, default=str))
    table = markdown(results)
    print("\n" + table)
    if args.write_doc and not args.quick:  # a smoke run never replaces published figures
        write_doc(table)
    return 0


def bench_app():
    from bench.stack import driver_app, migrate

    app = driver_app()
    migrate(app)
    return app


def fresh_database(app):
    from tests.conftest import dispose

    dispose(app)
    recreate_database()
    return bench_app()


def wait_idle(stack: Stack) -> None:
    deadline = time.monotonic() + 300
    while not stack.queue_idle() and time.monotonic() < deadline:
        time.sleep(0.5)
    time.sleep(1)


def step(what: str) -> None:
    print(f"[{datetime.now().strftime('%H:%M:%S')}] {what}", file=sys.stderr, flush=True)


def _ms(value: float) -> str:
    return f"{value:,.0f} ms" if value >= 10 else f"{value:.1f} ms"


def _met(value: float, target: float) -> str:
    return "yes" if value <= target else "**no**"


def markdown(r: dict) -> str:
    m = r["machine"]
    lines = [
        f"Run {r['started']} ({r['mode']}) on {m['cpu']}, {m['cpus']} CPUs, "
        f"{m['memory_gib']} GiB; PostgreSQL {m['postgresql']}, Redis {m['redis']}, "
        f"Python {m['python']}; gunicorn {r['setup']['web_workers']} workers x "
        f"{r['setup']['web_threads']} threads, {r['setup']['rq_workers']} RQ workers.",
        "",
        "| | measure | p50 | p99 | target | met |",
        "|---|---|---|---|---|---|",
    ]
    for key, label in (("B1", "cancel → first offer SMS accepted"),
                       ("B2", "offer expiry → next SMS accepted")):  # fmt: skip
        if key in r:
            b = r[key]
            lines.append(
                f"| {key} | {label} ({len(b['runs'])} runs × {b['runs'][0]['n']}) | "
                f"{_ms(b['p50'])} | {_ms(b['p99'])} (worst run {_ms(b['p99_worst_run'])}) | "
                f"p99 ≤ {_ms(TARGETS_MS[key])} | {_met(b['p99'], TARGETS_MS[key])} |"
            )
    for run in r.get("B3", []):
        lines.append(
            f"| B3 | webhook at {run['rate']} req/s for {run['seconds']} s, "
            f"{run['n']} requests, {run['errors']} errors | {_ms(run['p50'])} | "
            f"{_ms(run['p99'])} | p99 ≤ 50 ms at 100 req/s | "
            + (_met(run["p99"], 50) if run["rate"] == 100 else "–")
            + " |"
        )
    if "B4" in r:
        b = r["B4"]
        lines.append(
            f"| B4 | {b['offers']:,} due offers in {b['shops']} shops: all expired / all next "
            f"SMS accepted | {b['expired_all_s']} s | {b['all_next_sms_accepted_s']} s | "
            f"≤ 10 s | {_met(b['all_next_sms_accepted_s'] * 1000, 10_000)} |"
        )
    if "B5" in r:
        b = r["B5"]
        for variant, label in (
            ("without_index", "without the eligibility index"),
            ("without_index_custom_plans", "no index, custom plans"),
            ("as_shipped", "as migrated, generic plans allowed"),
            ("as_shipped_custom_plans", "as shipped (index, custom plans)"),
        ):
            s = b[variant]
            lines.append(
                f"| B5 | next eligible of {b['customers']:,} customers, "
                f"{b['past_bookings']:,} bookings ({label}) | {_ms(s['p50'])} | "
                f"{_ms(s['p99'])} | p99 ≤ 20 ms | {_met(s['p99'], 20)} |"
            )
    if "B8" in r:
        b = r["B8"]
        for view in ("week", "day"):
            s = b[view]
            lines.append(
                f"| B8 | calendar {view} view, {b['resources']} resources × "
                f"{b['bookings_per_day']} bookings a day ({s['bookings_shown']:,} shown, "
                f"{s['n']} requests) | {_ms(s['p50'])} | {_ms(s['p99'])} | "
                + (f"week p99 ≤ 300 ms | {_met(s['p99'], 300)} |" if view == "week" else "– | – |")
            )
    if "B6" in r:
        parts = [
            f"{name} {v['rss_mib_total']} MiB ({v['processes']} proc)"
            for name, v in r["B6"].items()
        ]
        lines += ["", "B6 resident memory after B3: " + "; ".join(parts) + "."]
    if "B5" in r:
        lines += ["", "B5 plan as shipped:", "", "```", r["B5"]["plan"], "```"]
        lines += ["", "B5 plan without the eligibility index:", "", "```"]
        lines += [r["B5"]["plan_without_index"], "```"]
    return "\n".join(lines)


START, END = "<!-- results:start -->", "<!-- results:end -->"


def write_doc(table: str) -> None:
    doc = ROOT / "BENCHMARKS.md"
    text = doc.read_text()
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    doc.write_text(f"{head}{START}\n{table}\n{END}{tail}")


if __name__ == "__main__":
    sys.exit(main())
