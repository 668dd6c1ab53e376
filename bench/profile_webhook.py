"""Where the inbound SMS webhook spends its CPU: B3's mix, in-process, under pyinstrument.

``python -m bench.profile_webhook [--requests N]`` (or ``run(app)`` from the harness):
seeds B3's data (20 shops with their own numbers, one live offer per YES and per NO),
builds the web app exactly as gunicorn gets it (``Stack.env()``: APP_ENV=development,
REDIS_URL, so effects go to RQ, TWILIO_*, PUBLIC_BASE_URL), and calls its WSGI callable
with signed requests of the mix: a quarter each YES from a customer holding a live offer,
NO from another, HELP, and a text from an unknown number.

Three passes over fresh data, each request built (and signed) before the clock starts:

1. warm-up, unmeasured: lazy imports, SQLAlchemy's statement cache, the pool;
2. measured: ``time.process_time`` around each request, so CPU ms per request by kind
   and overall (the web process's whole CPU for the request: Flask, the app, psycopg,
   redis-py; gunicorn's own HTTP parsing and access log are not in it);
3. profiled: the same under pyinstrument with a CPU clock (``time.thread_time``), so the
   tree shows CPU, not time spent waiting for PostgreSQL or Redis.

The app logs at INFO as under gunicorn, into /dev/null. No RQ worker runs: effects pile
up in the benchmark's Redis database, as they would wait for a worker. ``--detail`` also
reports the CPU inside more functions (``DETAIL``); ``--show-all`` hides no frames.

``--stack RATE`` measures instead what the target is set on: B3 at RATE requests/s
through gunicorn, the RQ workers and the scheduler (``bench.webhook_load``), with each
role's process CPU per request (from /proc; PostgreSQL's backends of the benchmark
database and the load generator too) and the latencies.

Set ``BENCH_DB_NAME`` and ``BENCH_REDIS_URL`` to keep out of other runs' way, e.g.
``BENCH_DB_NAME=slot_recovery_bench_profile BENCH_REDIS_URL=redis://127.0.0.1:6379/12``.
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import random
import sys
import time
from collections import defaultdict
from pathlib import Path
from urllib.parse import urlencode

from flask import Flask
from pyinstrument import Profiler
from pyinstrument.stack_sampler import get_stack_sampler
from redis import Redis
from twilio.request_validator import RequestValidator
from werkzeug.test import EnvironBuilder

from bench import webhook_load
from bench.fake_provider import AUTH_TOKEN
from bench.stack import REDIS_URL, ROOT, Stack
from bench.webhook_load import KINDS

PATH = "/webhooks/twilio/sms"
WEB_PORT = 8000  # never bound: only the URL Twilio would have signed
PROFILE_LINES = 60  # of the profile's text in the returned dict


def web_app() -> Flask:
    """The app as gunicorn builds it: ``create_app()`` over the Stack's environment."""
    from app import create_app
    from recovery import config

    env = Stack(web_port=WEB_PORT).env()
    return create_app(config.from_environment(env, ROOT / "instance"))


def _environ(base_url: str, form: dict[str, str]) -> tuple[dict, bytes]:
    """A WSGI environ like gunicorn's for one signed POST, and its body (built before the
    clock runs)."""
    signature = RequestValidator(AUTH_TOKEN).compute_signature(base_url + PATH, form)
    body = urlencode(form).encode()
    builder = EnvironBuilder(
        path=PATH,
        base_url=base_url,
        method="POST",
        data=body,
        content_type="application/x-www-form-urlencoded",
        headers={"X-Twilio-Signature": signature},
    )
    try:
        environ = builder.get_environ()
        return environ, environ["wsgi.input"].read()
    finally:
        builder.close()


def _call(web: Flask, environ: dict, body: bytes) -> int:
    """One request through the app's WSGI callable, as gunicorn calls it; its status."""
    status = []

    def start_response(line, headers, exc_info=None):
        status.append(int(line.split(" ", 1)[0]))

    answer = web.wsgi_app({**environ, "wsgi.input": io.BytesIO(body)}, start_response)
    try:
        for _ in answer:
            pass
    finally:
        if hasattr(answer, "close"):
            answer.close()
    return status[0]


Request = tuple[str, dict, bytes]  # kind, WSGI environ, body


def _requests(web: Flask, app: Flask, per_kind: int, rng: random.Random) -> list[Request]:
    base_url = web.config["PUBLIC_BASE_URL"]
    return [
        (kind, *_environ(base_url, form)) for kind, form in webhook_load.mix(app, per_kind, rng)
    ]


def _pass(web: Flask, requests: list[Request]) -> dict[str, list[float]]:
    """Each request's CPU seconds, by kind; any answer but 200 is a failure."""
    cpu: dict[str, list[float]] = defaultdict(list)
    for kind, environ, body in requests:
        before = time.process_time()
        status = _call(web, environ, body)
        cpu[kind].append(time.process_time() - before)
        if status != 200:
            raise RuntimeError(f"{kind} answered {status}")
    return cpu


# Functions whose CPU is reported on its own, in ms per request of the whole mix: the work
# a NO does for the next customer, a YES's acceptance, the RQ enqueue after the commit.
TIMED = (
    ("recovery.offers.offering", "decline_offer"),
    ("recovery.offers.offering", "offer_next"),
    ("recovery.offers.accepting", "accept_offer"),
    ("jobs.dispatch", "RQDispatcher.dispatch"),
)
# ``--detail``: more of them, nested in the ones above (so their times overlap). One the
# code no longer has is left out.
DETAIL = (
    ("recovery.offers.eligibility", "pick_next_customers"),
    ("recovery.messaging.outbox", "queue_many"),
    ("recovery.messaging.outbox", "record_reply"),
    ("recovery.payments.requests", "request_payment"),
    ("recovery.availability.blocks", "blocking"),
    ("recovery.availability.overlap", "ensure_free"),
    ("recovery.db", "try_insert"),
    ("recovery.offers.locks", "lock_opening"),
    ("recovery.offers.locks", "reload"),
    ("recovery.messaging.phones", "normalize_phone"),
    ("recovery.http.twilio", "verify_signature"),
    ("recovery.http.twilio", "twiml"),
    ("recovery.offers.inbound", "handle_inbound"),
)


class _Timed:
    """Adds up the CPU spent inside the ``TIMED`` functions, wherever they are imported."""

    def __init__(self, functions=TIMED) -> None:
        self.functions = functions
        self.seconds: dict[str, float] = defaultdict(float)
        self.undo: list[tuple[object, str, object]] = []

    def __enter__(self):
        import importlib

        for module_name, qualname in self.functions:
            owner = importlib.import_module(module_name)
            *path, name = qualname.split(".")
            for part in path:
                owner = getattr(owner, part)
            original = getattr(owner, name, None)
            if original is None:
                continue
            wrapped = self._wrap(f"{module_name}.{qualname}", original)
            # Every module that imported it by name, and its home.
            holders = [owner] + [
                m for m in list(sys.modules.values())
                if m is not None and getattr(m, name, None) is original and m is not owner
            ]  # fmt: skip
            for holder in holders:
                self.undo.append((holder, name, original))
                setattr(holder, name, wrapped)
        return self

    def _wrap(self, label: str, func):
        seconds = self.seconds

        def timed(*args, **kwargs):
            before = time.process_time()
            try:
                return func(*args, **kwargs)
            finally:
                seconds[label] += time.process_time() - before

        return timed

    def __exit__(self, *exc):
        for holder, name, original in reversed(self.undo):
            setattr(holder, name, original)


class _QuietInfoLogging:
    """Log at INFO, as the app does under gunicorn, but into /dev/null."""

    def __enter__(self):
        root = logging.getLogger()
        self.saved = root.level, root.handlers[:]
        self.sink = open(os.devnull, "w")
        handler = logging.StreamHandler(self.sink)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.handlers[:] = [handler]
        root.setLevel(logging.INFO)
        return self

    def __exit__(self, *exc):
        root = logging.getLogger()
        root.setLevel(self.saved[0])
        root.handlers[:] = self.saved[1]
        self.sink.close()


def _ms(seconds: list[float]) -> float:
    return round(sum(seconds) / len(seconds) * 1000, 2) if seconds else 0.0


def run(app: Flask, requests: int = 400, show_all: bool = False, detail: bool = False) -> dict:
    """Profile ``requests`` webhook calls of the B3 mix against ``app``'s database.

    ``app`` is the benchmark's driver app (``bench.stack.driver_app``, migrated): it
    seeds. The requests go to a second app built as gunicorn builds it.
    """
    per_kind = max(1, requests // 4)
    web = web_app()
    rng = random.Random(3)
    warm = _requests(web, app, max(10, per_kind // 4), rng)
    measured = _requests(web, app, per_kind, rng)
    profiled = _requests(web, app, per_kind, rng)
    with _QuietInfoLogging():
        _pass(web, warm)
        with _Timed(TIMED + DETAIL if detail else TIMED) as timed:
            cpu = _pass(web, measured)
        sampler = get_stack_sampler()
        sampler.timer_func = time.thread_time  # a CPU profile: waiting is not work
        profiler = Profiler(interval=0.001)
        try:
            profiler.start()
            _pass(web, profiled)
            profiler.stop()
        finally:
            sampler.timer_func = None
    text = profiler.output_text(time="percent_of_total", show_all=show_all)
    everything = [s for kind in KINDS for s in cpu[kind]]
    from tests.conftest import dispose

    dispose(web)
    return {
        "requests": len(everything),
        "cpu_ms_per_request": _ms(everything),
        "by_kind": {kind: _ms(cpu[kind]) for kind in KINDS},
        # CPU ms inside each TIMED function, per request of the whole mix.
        "inside_ms_per_request": {
            label: round(seconds / len(everything) * 1000, 2)
            for label, seconds in timed.seconds.items()
        },
        "profile_text": "\n".join(text.splitlines()[:PROFILE_LINES]),
        "profile_full_text": text,
    }


def _cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # fields 14, 15


def cpu_snapshot(stack: Stack) -> dict[str, dict[int, float]]:
    roles = _role_pids(stack)
    return {role: {pid: _cpu_seconds(pid) for pid in pids} for role, pids in roles.items()}


def ms_per_request(before: dict, after: dict, n: int) -> dict[str, float]:
    """Each role's CPU between two snapshots per request. A process that appeared in
    between (a new database connection) counts from zero; one that ended is lost."""
    return {
        role: round(
            sum(t - before.get(role, {}).get(pid, 0.0) for pid, t in pids.items()) / n * 1000, 2
        )
        for role, pids in after.items()
    }


def _role_pids(stack: Stack) -> dict[str, list[int]]:
    """Each role's processes, and PostgreSQL's backends serving the benchmark's database
    (their process title names it) and this process, the load generator."""
    from bench.stack import DB_NAME, descendants

    roles = {p.name: [p.popen.pid, *descendants(p.popen.pid)] for p in stack.procs}
    roles["postgres"] = [
        int(entry.name)
        for entry in Path("/proc").iterdir()
        if entry.name.isdigit() and _title(entry).startswith("postgres: ")
        and f" {DB_NAME} " in _title(entry)
    ]  # fmt: skip
    roles["load generator"] = [os.getpid()]
    return roles


def _title(entry: Path) -> str:
    try:
        return (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def run_stack(app: Flask, rate: int, seconds: int) -> dict:
    """B3 at one rate through the whole stack (``bench.webhook_load``), with each role's
    process CPU over the run divided by the requests: the figure the target is set on."""
    import asyncio

    from bench import webhook_load
    from bench.stats import summary

    stack = Stack()
    try:
        stack.start()
        webhook_load.warm_up(stack)
        requests, kinds = webhook_load.prepare(stack, app, rate, seconds)
        before = cpu_snapshot(stack)
        results, worst_lag = asyncio.run(webhook_load._open_loop(stack.web_port, requests, rate))
        done = cpu_snapshot(stack)
        stack_idle = time.monotonic() + 120
        while not stack.queue_idle() and time.monotonic() < stack_idle:
            time.sleep(0.5)
        time.sleep(1)
        drained = cpu_snapshot(stack)
    finally:
        stack.stop()
    n = len(requests)
    return {
        "rate": rate,
        "requests": n,
        **summary([ms for ms, _ in results]),
        "errors": sum(1 for _, status in results if status != 200),
        "sender_worst_lag_ms": round(worst_lag * 1000, 1),
        # CPU per request while the load ran, and until the workers had drained the queue.
        "cpu_ms_per_request": ms_per_request(before, done, n),
        "cpu_ms_per_request_drained": ms_per_request(before, drained, n),
        "by_kind": {
            kind: summary([ms for (ms, _), k in zip(results, kinds, strict=True) if k == kind])
            for kind in KINDS
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile_webhook", description=__doc__)
    parser.add_argument("--requests", type=int, default=400, help="measured (and profiled)")
    parser.add_argument("--lines", type=int, default=PROFILE_LINES, help="profile lines shown")
    parser.add_argument("--show-all", action="store_true", help="no frames hidden")
    parser.add_argument("--detail", action="store_true", help="time more functions")
    parser.add_argument(
        "--stack",
        type=int,
        metavar="RATE",
        help="instead: B3 at RATE requests/s through gunicorn and the workers, with CPU",
    )
    parser.add_argument("--seconds", type=int, default=20, help="with --stack")
    args = parser.parse_args()

    from bench.stack import driver_app, migrate, recreate_database

    recreate_database()
    app = driver_app()
    migrate(app)
    if args.stack:  # the Stack empties its Redis database when it starts
        import json

        print(json.dumps(run_stack(app, args.stack, args.seconds), indent=2))
        return 0
    Redis.from_url(REDIS_URL).flushdb()  # the effects of earlier runs, never carried out
    result = run(app, args.requests, show_all=args.show_all, detail=args.detail)
    print(f"{result['requests']} requests, CPU ms per request: {result['cpu_ms_per_request']}")
    for kind, ms in result["by_kind"].items():
        print(f"  {kind:8} {ms} ms")
    print("of which, per request of the mix:")
    for label, ms in result["inside_ms_per_request"].items():
        print(f"  {label:40} {ms} ms")
    print(
        "\npyinstrument, CPU clock (time.thread_time), profiled pass, % of its CPU"
        " (the profiler's own overhead inflates the total; the figures above are without it):\n"
    )
    print("\n".join(result["profile_full_text"].splitlines()[: args.lines]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
