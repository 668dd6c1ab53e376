"""The deployed shape on one machine: gunicorn, RQ workers, rqscheduler, fake Twilio.

PostgreSQL and Redis are the machine's servers; the benchmark gets its own database and
its own Redis database number, so it never touches what tests use.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from flask import Flask
from redis import Redis

from bench.fake_provider import ACCOUNT_SID, AUTH_TOKEN

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
RESULTS = ROOT / "bench" / "results"
PG_ADMIN_DSN = os.environ.get("BENCH_PG_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
DB_NAME = os.environ.get("BENCH_DB_NAME", "slot_recovery_bench")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/11")
FROM_NUMBER = "+447700900000"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def database_url() -> str:
    base = PG_ADMIN_DSN.rsplit("/", 1)[0]
    return f"{base}/{DB_NAME}".replace("postgresql://", "postgresql+psycopg://", 1)


def recreate_database() -> str:
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
            (DB_NAME,),
        )
        conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}"')
        conn.execute(f'CREATE DATABASE "{DB_NAME}"')
    return database_url()


def driver_app() -> Flask:
    """The app inside the benchmark process: seeds data and plays staff (cancels)."""
    from app import create_app

    app = create_app(
        {
            "SECRET_KEY": "bench-secret",
            "SQLALCHEMY_DATABASE_URI": database_url(),
            "REDIS_URL": REDIS_URL,
            "TWILIO_FROM_NUMBER": FROM_NUMBER,
            "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        }
    )
    logging.getLogger().setLevel(logging.WARNING)  # the loop logs every transition at INFO
    return app


def migrate(app: Flask) -> None:
    from flask_migrate import upgrade

    with app.app_context():
        upgrade()


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    log: Path

    def stop(self) -> None:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(5)


@dataclass
class Stack:
    web_workers: int = 3
    web_threads: int = 4
    rq_workers: int = 2
    logdir: Path = RESULTS / "logs"
    # Added to every process's environment last (e.g. {"SMS_SENDER_RATE": "0"} for B7).
    extra_env: dict[str, str] = field(default_factory=dict)
    procs: list[Proc] = field(default_factory=list)
    web_port: int = 0
    twilio_port: int = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    @property
    def accepted_log(self) -> Path:
        return self.logdir / "accepted.tsv"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TWILIO_", "STRIPE_"))}
        env.update(
            APP_ENV="development",
            SECRET_KEY="bench-secret",
            DATABASE_URL=database_url().replace("postgresql+psycopg://", "postgres://"),
            REDIS_URL=REDIS_URL,
            TWILIO_ACCOUNT_SID=ACCOUNT_SID,
            TWILIO_AUTH_TOKEN=AUTH_TOKEN,
            TWILIO_FROM_NUMBER=FROM_NUMBER,
            TWILIO_API_BASE_URL=f"http://127.0.0.1:{self.twilio_port}",
            PUBLIC_BASE_URL=self.base_url,
            PATH=f"{BIN}:{env.get('PATH', '')}",
            PYTHONUNBUFFERED="1",
        )
        env.update(self.extra_env)
        return env

    def _spawn(self, name: str, cmd: list[str]) -> Proc:
        log = self.logdir / f"{name}.log"
        with open(log, "wb") as out:
            popen = subprocess.Popen(
                cmd,
                cwd=ROOT,
                env=self.env(),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        proc = Proc(name, popen, log)
        self.procs.append(proc)
        return proc

    def start_fake_twilio(self) -> None:
        """Only the fake Twilio (what the baseline's cron run sends through)."""
        self.logdir.mkdir(parents=True, exist_ok=True)
        self.accepted_log.write_text("")
        self.twilio_port = free_port()
        py = str(BIN / "python")
        self._spawn(
            "fake_twilio",
            [py, "-m", "bench.fake_provider", "--port", str(self.twilio_port), "--out",
             str(self.accepted_log)],
        )  # fmt: skip
        wait_for(self._twilio_up, 30, "the fake Twilio")

    @property
    def twilio_url(self) -> str:
        return f"http://127.0.0.1:{self.twilio_port}"

    def _twilio_up(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.twilio_port), timeout=1):
                return True
        except OSError:
            return False

    def start(self) -> None:
        Redis.from_url(REDIS_URL).flushdb()
        self.start_fake_twilio()
        self.web_port = free_port()
        # The Procfile's commands, bound to loopback.
        self._spawn(
            "web",
            [
                str(BIN / "gunicorn"),
                "-c",
                "gunicorn.conf.py",
                "--bind",
                f"127.0.0.1:{self.web_port}",
                "--workers",
                str(self.web_workers),
                "--threads",
                str(self.web_threads),
                "--access-logfile",
                "-",
                "app:create_app()",
            ],
        )
        for i in range(self.rq_workers):
            self._spawn(
                f"worker{i + 1}",
                [
                    str(BIN / "rq"),
                    "worker",
                    "--url",
                    REDIS_URL,
                    "--worker-class",
                    "jobs.worker.AppWorker",
                    "--with-scheduler",
                    "default",
                ],
            )
        self._spawn(
            "scheduler", [f"{BIN}/flask", "--app", "app", "jobs", "scheduler", "--interval", "0.25"]
        )
        wait_for(self._healthy, 90, "gunicorn /healthz")
        wait_for(self._workers_up, 60, "rq workers")
        wait_for(lambda: "periodic jobs registered" in self._log("scheduler")
                 or self._scheduled(), 60, "the scheduler")  # fmt: skip
        time.sleep(2)  # let the first periodic sweep run on the empty database

    def _log(self, name: str) -> str:
        return (self.logdir / f"{name}.log").read_text(errors="replace")

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.base_url + "/healthz", timeout=2) as r:  # noqa: S310
                return r.status == 200
        except OSError:
            return False

    def _workers_up(self) -> bool:
        from rq import Worker

        return len(Worker.all(connection=Redis.from_url(REDIS_URL))) >= self.rq_workers

    def _scheduled(self) -> bool:
        return bool(Redis.from_url(REDIS_URL).exists("rq:scheduler:scheduled_jobs"))

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()
        self.procs.clear()

    def accepted(self) -> dict[str, tuple[str, float]]:
        """sid -> (to, unix time the fake provider accepted it)."""
        out = {}
        for line in self.accepted_log.read_text().splitlines():
            parts = line.split("\t")
            if len(parts) == 3:
                out[parts[0]] = (parts[1], float(parts[2]))
        return out

    def queue_idle(self) -> bool:
        redis = Redis.from_url(REDIS_URL)
        return redis.llen("rq:queue:default") == 0

    # -- memory (B6) ---------------------------------------------------------------------

    def resident_memory(self) -> dict[str, dict]:
        """RSS of each role (the process we started and everything under it), and of each
        of those processes under its own name (``process_roles``)."""
        report = {}
        for proc in self.procs:
            each = [
                {"pid": pid, "process": name, "rss_mib": round(kib / 1024, 1)}
                for pid, name in self.process_roles(proc)
                if (kib := rss_kib(pid))
            ]
            report[proc.name] = {
                "processes": len(each),
                "rss_mib_total": round(sum(p["rss_mib"] for p in each), 1),
                "rss_mib_each": [p["rss_mib"] for p in each],
                "each": each,
            }
        return report

    def process_roles(self, proc: Proc) -> list[tuple[int, str]]:
        """(pid, name) of the process we started and each process under it.

        gunicorn: its master and each worker (numbered by pid). An RQ worker: the process
        that runs the jobs (``AppWorker`` is a ``SimpleWorker``: no work horse), the
        scheduler RQ forks for ``--with-scheduler`` (pid from the worker's log), and any
        other child as a work horse (a forking worker class makes one per job)."""
        root = proc.popen.pid
        children = sorted(descendants(root))
        if proc.name == "web":
            return [(root, "web master")] + [
                (pid, f"web worker {n}") for n, pid in enumerate(children, 1)
            ]
        if proc.name.startswith("worker"):
            found = re.findall(r"Scheduler for .* started with PID (\d+)", self._log(proc.name))
            scheduler_pids = {int(pid) for pid in found}
            return [(root, f"{proc.name} (runs jobs)")] + [
                (pid, f"{proc.name} rq scheduler" if pid in scheduler_pids
                 else f"{proc.name} work horse")
                for pid in children
            ]  # fmt: skip
        return [(root, proc.name)] + [(pid, f"{proc.name} child") for pid in children]


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def wait_for(check: Callable[[], object], timeout: float, what: str, poll: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(poll)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
