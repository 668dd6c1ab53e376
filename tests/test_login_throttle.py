"""Sign-in throttling (admin/throttle.py): exponential backoff per account and per client
address, the same answers for unknown emails, the proxy hops, and one limit shared by
every web process through Redis.

Time is the app clock (the ``clock`` fixture), moved by hand instead of sleeping.
"""

from __future__ import annotations

import re
import threading
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests
from werkzeug.security import generate_password_hash

from admin import throttle
from recovery import config
from recovery.db import CLOCK_EXTENSION
from tests import factories as f
from tests.admin_support import CSRF_RE, csrf_token
from tests.conftest import REDIS_URL
from tests.processes import BIN, free_port, process_env, running, wait_until
from tests.support import Clock, installed

PASSWORD = "pw-123456"
EMAIL = "sam@fade.example"
WRONG = "Wrong email or password."


def sign_in(client, email: str, password: str, headers: dict | None = None):
    token = csrf_token(client, "/login")
    data = {"csrf_token": token, "email": email, "password": password}
    return client.post("/login", data=data, headers=headers or {})


def throttled(response, seconds: int) -> bool:
    return (
        response.status_code == 429
        and response.headers["Retry-After"] == str(seconds)
        and response.get_data(as_text=True)
        == f"Too many sign-in attempts. Try again in {throttle.wait_text(seconds)}."
    )


@pytest.fixture
def sam(session):
    shop = f.shop(session, name="Fade Street")
    user = f.staff(session, shop, email=EMAIL, password=PASSWORD)
    session.commit()
    return user


@pytest.fixture
def many_posts(app, monkeypatch):
    """These tests post more often than the route-level ceiling allows (tested below)."""
    monkeypatch.setitem(app.config, "LOGIN_RATE_LIMIT", "1000 per minute")


def test_after_five_failures_each_wait_doubles_up_to_fifteen_minutes(app, sam, clock, many_posts):
    client = app.test_client()
    for _ in range(5):
        assert sign_in(client, EMAIL, "nope").status_code == 401
    wait = 1
    while wait < 900:
        # Throttled: even the right password is not looked at.
        assert throttled(sign_in(client, EMAIL, PASSWORD), wait)
        clock.advance(seconds=wait - 0.5)
        assert sign_in(client, EMAIL, PASSWORD).status_code == 429  # not yet
        clock.advance(seconds=0.5)
        assert sign_in(client, EMAIL, "nope").status_code == 401  # judged, and failed
        wait = min(wait * 2, 900)
    # 1, 2, 4, ... 512 s, then the cap: 15 minutes, not 1024 s.
    assert throttled(sign_in(client, EMAIL, PASSWORD), 900)
    assert client.get("/admin/").status_code == 302  # never signed in
    clock.advance(minutes=15)
    assert sign_in(client, EMAIL, PASSWORD).status_code == 302


def test_waits_read_in_seconds_then_minutes():
    assert throttle.wait_text(1) == "1 second"
    assert throttle.wait_text(59) == "59 seconds"
    assert throttle.wait_text(60) == "1 minute"
    assert throttle.wait_text(61) == "2 minutes"
    assert throttle.wait_text(900) == "15 minutes"


def visible_text(response, email: str) -> str:
    """What a person sees: no tags (CSRF token, nonces), the typed email left out."""
    body = response.get_data(as_text=True).replace(email, "EMAIL")
    return " ".join(re.sub(r"<[^>]+>", " ", body).split())


def test_an_unknown_email_is_answered_exactly_like_a_known_one(
    app, session, sam, clock, redis_conn
):
    disabled = f.staff(session, sam.shop, email="gone@fade.example", active=False)
    session.commit()
    runs = {}
    for email in (EMAIL, "nobody@fade.example", disabled.email):
        redis_conn.flushdb()  # each run from the same clean start (they share an address)
        client = app.test_client()
        answers = []
        for _ in range(2):
            for _ in range(6):
                r = sign_in(client, email, "nope")
                answers.append(
                    (r.status_code, r.headers.get("Retry-After"), visible_text(r, email))
                )
            clock.advance(seconds=2)
        runs[email] = answers
    known, unknown, inactive = runs.values()
    assert known == unknown == inactive
    assert [status for status, _, _ in known] == [401] * 5 + [429] + [401, 429, 429, 429, 429, 429]
    assert WRONG in known[0][2]


def test_unknown_emails_cost_a_password_hash_like_known_ones(sam):
    # The dummy hash uses the same method and work factor as a real one, so an unknown
    # email takes as long to refuse.
    method = sam.password_hash.split("$")[0]
    assert method == generate_password_hash("x").split("$")[0]
    assert throttle._dummy_hash().split("$")[0] == method
    assert throttle.password_matches(None, PASSWORD) is False


def test_the_email_counts_whatever_its_case(app, sam, clock):
    client = app.test_client()
    for email in ("SAM@fade.example", "sam@FADE.example", " sam@fade.example", "Sam@Fade.Example"):
        assert sign_in(client, email, "nope").status_code == 401
    assert sign_in(client, EMAIL, "nope").status_code == 401
    assert throttled(sign_in(client, "SAM@FADE.EXAMPLE", PASSWORD), 1)


def test_a_success_resets_the_account_and_the_address(app, sam, clock, many_posts):
    client = app.test_client()
    for _ in range(4):
        assert sign_in(client, EMAIL, "nope").status_code == 401
    assert sign_in(client, EMAIL, PASSWORD).status_code == 302
    client.post("/logout", data={"csrf_token": csrf_token(client)})
    # Five free failures again, for the account and for this address.
    for _ in range(5):
        assert sign_in(client, EMAIL, "nope").status_code == 401
    assert throttled(sign_in(client, EMAIL, PASSWORD), 1)
    # After a lock, too: the count starts again from nothing.
    clock.advance(seconds=1)
    assert sign_in(client, EMAIL, PASSWORD).status_code == 302
    client.post("/logout", data={"csrf_token": csrf_token(client)})
    for _ in range(5):
        assert sign_in(client, EMAIL, "nope").status_code == 401
    assert throttled(sign_in(client, EMAIL, "nope"), 1)


def test_an_address_is_throttled_across_accounts(app, sam, clock):
    client = app.test_client()
    for i in range(5):
        assert sign_in(client, f"guess{i}@fade.example", PASSWORD).status_code == 401
    # A sixth account from the same address waits, even the real one with its password.
    assert throttled(sign_in(client, EMAIL, PASSWORD), 1)


def test_x_forwarded_for_is_ignored_without_trusted_hops(app, clock):
    assert app.config["TRUSTED_PROXY_HOPS"] == 0
    client = app.test_client()
    for i in range(5):
        forged = {"X-Forwarded-For": f"203.0.113.{i}"}
        assert sign_in(client, f"guess{i}@fade.example", "x", forged).status_code == 401
    # A new forged address each time changed nothing: it is the same client.
    forged = {"X-Forwarded-For": "198.51.100.7"}
    assert throttled(sign_in(client, "other@fade.example", "x", forged), 1)


def test_x_forwarded_for_is_honoured_with_one_hop(make_app, redis_conn):
    app = make_app(TRUSTED_PROXY_HOPS=1)
    with installed(app, CLOCK_EXTENSION, Clock(datetime(2026, 1, 12, 9, tzinfo=UTC))):
        client = app.test_client()
        # Different clients behind the router: each address has its own count.
        for i in range(8):
            via = {"X-Forwarded-For": f"203.0.113.{i}"}
            assert sign_in(client, f"guess{i}@fade.example", "x", via).status_code == 401
        # The router appends the address it saw; what the client sent before it is not
        # believed (one hop).
        for i in range(5):
            via = {"X-Forwarded-For": f"10.0.0.{i}, 198.51.100.7"}
            assert sign_in(client, f"again{i}@fade.example", "x", via).status_code == 401
        via = {"X-Forwarded-For": "10.9.9.9, 198.51.100.7"}
        assert throttled(sign_in(client, "next@fade.example", "x", via), 1)
        # Another client is not held back by that one.
        via = {"X-Forwarded-For": "192.0.2.1"}
        assert sign_in(client, "next@fade.example", "x", via).status_code == 401


def test_a_brute_force_run_is_held_off(app, sam, clock, many_posts):
    passwords = [f"guess-{i}" for i in range(50)]
    passwords[20] = PASSWORD  # the list holds the right one
    client = app.test_client()
    statuses = [sign_in(client, EMAIL, password).status_code for password in passwords]
    assert statuses == [401] * 5 + [429] * 45
    assert client.get("/admin/").status_code == 302  # the right password got nowhere
    # The owner, a second later, gets in.
    clock.advance(seconds=1)
    assert sign_in(app.test_client(), EMAIL, PASSWORD).status_code == 302


def test_a_parallel_burst_gets_only_the_free_failures(app, committed, clock):
    shop = f.shop(committed)
    f.staff(committed, shop, email=EMAIL, password=PASSWORD)
    committed.commit()
    clients = [app.test_client() for _ in range(20)]
    tokens = [csrf_token(c, "/login") for c in clients]
    start = threading.Barrier(len(clients))
    statuses: list[int] = []

    def guess(client, token, i) -> None:
        start.wait()
        data = {"csrf_token": token, "email": EMAIL, "password": f"guess-{i}"}
        statuses.append(client.post("/login", data=data).status_code)

    threads = [
        threading.Thread(target=guess, args=(c, t, i))
        for i, (c, t) in enumerate(zip(clients, tokens, strict=True))
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Checked in parallel, yet no more passwords were tried than the free failures.
    assert len(statuses) == 20 and set(statuses) <= {401, 429}
    assert 1 <= statuses.count(401) <= 5


def test_the_route_level_ceiling_answers_alike(app, session, monkeypatch):
    monkeypatch.setitem(app.config, "LOGIN_RATE_LIMIT", "3 per minute")
    client = app.test_client()
    for i in range(3):
        assert sign_in(client, f"guess{i}@fade.example", "x").status_code == 401
    response = sign_in(client, "guess9@fade.example", "x")
    assert response.status_code == 429
    seconds = int(response.headers["Retry-After"])
    assert 1 <= seconds <= 61
    text = response.get_data(as_text=True)
    assert text == f"Too many sign-in attempts. Try again in {throttle.wait_text(seconds)}."
    assert client.get("/login").status_code == 200  # reading the page is not limited


def test_the_embedded_mode_counts_in_memory_per_app(make_app):
    one, two = make_app(REDIS_URL=None), make_app(REDIS_URL=None)
    first, second = one.test_client(), two.test_client()
    for _ in range(5):
        assert sign_in(first, "x@fade.example", "x").status_code == 401
    assert sign_in(first, "x@fade.example", "x").status_code == 429
    # Another app (another demo process) has its own memory.
    assert sign_in(second, "x@fade.example", "x").status_code == 401


def test_trusted_proxy_hops_setting(tmp_path: Path):
    production = dict.fromkeys(config.REQUIRED_IN_PRODUCTION, "x")
    production |= {
        "APP_ENV": "production",
        "DATABASE_URL": "postgres://u@db/x",
        "PUBLIC_BASE_URL": "https://slots.example.com",
    }
    assert config.from_environment({}, tmp_path)["TRUSTED_PROXY_HOPS"] == 0
    assert config.from_environment(production, tmp_path)["TRUSTED_PROXY_HOPS"] == 1
    with_two = production | {"TRUSTED_PROXY_HOPS": "2"}
    assert config.from_environment(with_two, tmp_path)["TRUSTED_PROXY_HOPS"] == 2
    for bad in ("-1", "one", "1.5"):
        with pytest.raises(config.ConfigError, match="TRUSTED_PROXY_HOPS"):
            config.from_environment({"TRUSTED_PROXY_HOPS": bad}, tmp_path)
    assert "TRUSTED_PROXY_HOPS" in config.VARIABLES


# ---------------------------------------------------------------- two web processes


def web_cmd(port: int) -> list[str]:
    # A long first lock (20 s) so no lock lapses while the test runs, however slow.
    factory = "app:create_app({'LOGIN_THROTTLE_BASE_SECONDS': 20})"
    return [str(BIN / "gunicorn"), "--bind", f"127.0.0.1:{port}", "--threads", "4", factory]


def http_sign_in(base: str, email: str, password: str) -> requests.Response:
    """A fresh browser: fetch the form, post it."""
    with requests.Session() as browser:
        page = browser.get(f"{base}/login", timeout=10).text
        token = CSRF_RE.search(page).group(1)
        data = {"csrf_token": token, "email": email, "password": password}
        return browser.post(f"{base}/login", data=data, allow_redirects=False, timeout=30)


def test_two_web_processes_share_one_limit(database_url, committed, redis_conn):
    shop = f.shop(committed)
    f.staff(committed, shop, email=EMAIL, password=PASSWORD)
    committed.commit()
    env = process_env(database_url, REDIS_URL)
    ports = [free_port(), free_port()]
    with ExitStack() as stack:
        procs = [stack.enter_context(running(web_cmd(port), env)) for port in ports]
        a, b = (f"http://127.0.0.1:{port}" for port in ports)
        for base, proc in zip((a, b), procs, strict=True):
            wait_until(lambda base=base: answers(base), 30, f"gunicorn at {base}", proc)

        # Failures on one process count against attempts on the other.
        for base in (a, b, a):
            assert http_sign_in(base, EMAIL, "nope").status_code == 401
        # A success on B clears what A counted.
        assert http_sign_in(b, EMAIL, PASSWORD).status_code == 302
        for base in (a, b, a, b, a):
            assert http_sign_in(base, EMAIL, "nope").status_code == 401
        for base in (b, a):
            refused = http_sign_in(base, EMAIL, PASSWORD)
            assert refused.status_code == 429
            assert 1 <= int(refused.headers["Retry-After"]) <= 20
            assert refused.text.startswith("Too many sign-in attempts. Try again in ")

        # A burst at both processes at once, from a clean count: no more passwords are
        # tried than the free failures, whichever process takes each request.
        redis_conn.flushdb()
        statuses: list[int] = []
        start = threading.Barrier(16)

        def guess(base: str, i: int) -> None:
            with requests.Session() as browser:
                token = CSRF_RE.search(browser.get(f"{base}/login", timeout=10).text).group(1)
                start.wait()
                data = {"csrf_token": token, "email": EMAIL, "password": f"guess-{i}"}
                statuses.append(browser.post(f"{base}/login", data=data, timeout=30).status_code)

        threads = [threading.Thread(target=guess, args=((a, b)[i % 2], i)) for i in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(statuses) == 16 and set(statuses) <= {401, 429}
        assert 1 <= statuses.count(401) <= 5

        for proc in procs:
            assert "Traceback" not in proc.output(), proc.output()


def answers(base: str) -> bool:
    try:
        return requests.get(f"{base}/login", timeout=2).status_code == 200
    except requests.RequestException:
        return False
