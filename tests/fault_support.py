"""Helpers for the fault suite: private servers we may crash, and signed posts over HTTP.

The shared PostgreSQL and Redis serve other test runs, so a test that restarts or kills a
server gets its own: a PostgreSQL cluster in a temporary directory and a redis-server,
each on a free loopback port, owned by the test and removed afterwards.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import psycopg
from twilio.request_validator import RequestValidator

from tests.processes import free_port, wait_until

PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))
PG_USER = "postgres"  # initdb and postgres refuse to run as root


def _as_postgres(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", PG_USER, "--", *cmd] if os.geteuid() == 0 else cmd


@dataclass
class PrivatePostgres:
    """A throwaway PostgreSQL cluster on a free port; stop/start/restart it at will."""

    datadir: Path
    port: int

    @property
    def admin_dsn(self) -> str:
        return f"postgresql://{PG_USER}@127.0.0.1:{self.port}/postgres"

    def url(self, dbname: str) -> str:
        return f"postgresql+psycopg://{PG_USER}@127.0.0.1:{self.port}/{dbname}"

    def _ctl(self, *args: str) -> None:
        subprocess.run(
            _as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(self.datadir), "-w", *args]),
            check=True,
            capture_output=True,
            timeout=60,
        )

    def start(self) -> None:
        opts = f"-p {self.port} -k {self.datadir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._ctl("-o", opts, "-l", str(self.datadir / "server.log"), "start")

    def stop(self) -> None:
        self._ctl("-m", "fast", "stop")

    def create_database(self, name: str) -> str:
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


@contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    root = Path(tempfile.mkdtemp(prefix="faults-pg-"))
    datadir = root / "data"
    datadir.mkdir()
    if os.geteuid() == 0:
        shutil.chown(root, PG_USER)
        shutil.chown(datadir, PG_USER)
    subprocess.run(
        _as_postgres(
            [str(PG_BIN / "initdb"), "-D", str(datadir), "-U", PG_USER, "-A", "trust", "-N"]
        ),
        check=True,
        capture_output=True,
        timeout=120,
    )
    cluster = PrivatePostgres(datadir, free_port())
    cluster.start()
    try:
        yield cluster
    finally:
        with suppress(subprocess.CalledProcessError):  # already stopped by the test
            cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


class PrivateRedis:
    """A redis-server on a free port, without persistence, that a test may kill or freeze."""

    def __init__(self) -> None:
        self.port = free_port()
        self.popen: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.popen = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_until(self._answers, 10, "the private redis-server")

    def _answers(self) -> bool:
        from redis import Redis
        from redis.exceptions import RedisError

        client = Redis(port=self.port, socket_connect_timeout=0.5, socket_timeout=0.5)
        try:
            return bool(client.ping())
        except RedisError:
            return False
        finally:
            client.close()

    def kill(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(10)

    def freeze(self) -> None:
        """Stop the server without closing its sockets: clients hang until they time out."""
        assert self.popen is not None
        self.popen.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.popen is not None
        self.popen.send_signal(signal.SIGCONT)


@contextmanager
def private_redis() -> Iterator[PrivateRedis]:
    server = PrivateRedis()
    server.start()
    try:
        yield server
    finally:
        if server.popen is not None and server.popen.poll() is None:
            server.thaw()
        server.kill()


@dataclass
class HttpAnswer:
    status: int
    body: str


def post_signed_http(
    base_url: str, path: str, params: dict[str, str], auth_token: str
) -> HttpAnswer:
    """POST a form to a running web process, signed as Twilio signs it."""
    url = base_url + path
    signature = RequestValidator(auth_token).compute_signature(url, params)
    request = urllib.request.Request(  # noqa: S310 - loopback http URLs we built
        url,
        data=urllib.parse.urlencode(params).encode(),
        headers={"X-Twilio-Signature": signature},
        method="POST",
    )
    return _open(request)


def get_http(url: str) -> HttpAnswer:
    return _open(urllib.request.Request(url))  # noqa: S310 - loopback http URLs we built


def _open(request: urllib.request.Request) -> HttpAnswer:
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return HttpAnswer(response.status, response.read().decode())
    except urllib.error.HTTPError as exc:
        return HttpAnswer(exc.code, exc.read().decode(errors="replace"))
    except OSError:
        return HttpAnswer(0, "")  # not listening (yet)


def settle(seconds: float) -> None:
    """Let background processes run for a moment (never used to decide an assertion)."""
    time.sleep(seconds)
