"""Start the project's real processes (rq worker, rqscheduler, gunicorn, honcho) in tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def worker_cmd(redis_url: str, with_scheduler: bool = False) -> list[str]:
    """The Procfile's ``rq worker``, against ``redis_url`` (the scheduler thread optional)."""
    return [
        str(BIN / "rq"),
        "worker",
        "--url",
        redis_url,
        "--worker-class",
        "jobs.worker.AppWorker",
        *(["--with-scheduler"] if with_scheduler else []),
        "default",
    ]


def process_env(database_url: str, redis_url: str, **extra: str) -> dict[str, str]:
    """The environment a deployed process would get, pointed at the test services."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TWILIO_", "STRIPE_"))}
    env.update(
        APP_ENV="development",
        SECRET_KEY="test-secret-key",
        DATABASE_URL=database_url.replace("postgresql+psycopg://", "postgres://"),
        REDIS_URL=redis_url,
        PATH=f"{BIN}:{env.get('PATH', '')}",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


class Proc:
    def __init__(self, popen: subprocess.Popen, log: Path) -> None:
        self.popen = popen
        self.log = log

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> None:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(5)


@contextmanager
def running(cmd: list[str], env: dict[str, str]) -> Iterator[Proc]:
    """Run ``cmd`` in its own process group from the repository root; stop it on exit."""
    with tempfile.NamedTemporaryFile("w+b", suffix=".log", delete=False) as log:
        popen = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    proc = Proc(popen, Path(log.name))
    try:
        yield proc
    finally:
        proc.stop()
        proc.log.unlink(missing_ok=True)


def wait_until(check: Callable[[], object], timeout: float, what: str, proc: Proc | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.1)
    detail = f"\n--- process output ---\n{proc.output()}" if proc else ""
    raise AssertionError(f"timed out after {timeout}s waiting for {what}{detail}")


def answers(url: str) -> bool:
    """True once a server answers ``url`` with any HTTP status. Readiness for tests that
    run no scheduler: their /healthz stays 503, as no sweep ever runs there."""
    try:
        with urllib.request.urlopen(url, timeout=2):  # noqa: S310 (loopback URLs of tests)
            return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
