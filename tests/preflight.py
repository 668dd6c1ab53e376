"""What ``make test`` checks before the suite: the services and the browser it needs.

Each missing part stops the run at once with one line that says what to do, instead of
failing deep inside the suite. ``python -m tests.preflight``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import psycopg
from redis import Redis
from redis.exceptions import RedisError

from tests.conftest import PG_ADMIN_DSN, REDIS_URL

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


def _can_install() -> list[str] | None:
    """The command prefix that may install Debian packages here, or None."""
    if not shutil.which("apt-get"):
        return None
    if os.geteuid() == 0:
        return []
    if (
        shutil.which("sudo")
        and subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode == 0
    ):
        return ["sudo"]
    return None


def ensure_chromium() -> str | None:
    if os.access(CHROMIUM, os.X_OK):
        return None
    prefix = _can_install()
    if prefix is not None:
        print("make test: installing Debian's chromium for the browser tests", flush=True)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        ok = subprocess.run([*prefix, "apt-get", "update", "-qq"], env=env).returncode == 0
        ok = (
            ok
            and subprocess.run(
                [*prefix, "apt-get", "install", "-y", "-qq", "chromium"],
                env=env,
                stdout=subprocess.DEVNULL,
            ).returncode
            == 0
        )
        if ok and os.access(CHROMIUM, os.X_OK):
            return None
    return (
        f"make test needs Chromium at {CHROMIUM} for the browser tests: "
        "install it with 'sudo apt-get install chromium' (or set CHROMIUM=/path/to/chromium)."
    )


def check_postgres() -> str | None:
    try:
        psycopg.connect(PG_ADMIN_DSN, connect_timeout=3).close()
    except psycopg.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"make test needs PostgreSQL at {PG_ADMIN_DSN} (user postgres, trust auth): {first}"
    return None


def check_redis() -> str | None:
    try:
        Redis.from_url(REDIS_URL, socket_connect_timeout=3).ping()
    except RedisError as exc:
        return f"make test needs Redis at {REDIS_URL}: {exc}"
    return None


def main() -> int:
    for check in (check_postgres, check_redis, ensure_chromium):
        problem = check()
        if problem:
            print(problem, file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
