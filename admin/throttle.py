"""Sign-in throttling: exponential backoff per account and per client address.

The rule. Each *key* (the submitted email, whether or not it is an account; the client
address; the two-factor step's own keys) may fail ``LOGIN_THROTTLE_FREE_FAILURES`` times
(5). From then on every failure locks the key for longer: 1 s, 2 s, 4 s, ... at most
``LOGIN_THROTTLE_MAX_SECONDS`` (15 minutes). While a key is locked an attempt is refused
with 429 and ``Retry-After`` before the password is looked at. A success clears the key.
Failures are forgotten ``LOGIN_THROTTLE_WINDOW_SECONDS`` (a day) after the first one.

Why this shape and not only Flask-Limiter:

* Flask-Limiter's limits are fixed ("5 per minute"): they cannot grow with each failure,
  do not count failures only, and cannot be cleared by a success. So the backoff is
  this module's own small state machine: a failure counter and a "locked until" per key.
* The state lives in the storage of the app's Flask-Limiter (the ``limits`` package):
  Redis when ``REDIS_URL`` is set, so every web process shares one count, and memory in
  the embedded demo, one storage per app. Going through ``limits`` gives both backends
  with one code path. Its only primitives are counters (incr with an expiry, get,
  clear), so a lock is stored as a number: the "until" instant in epoch milliseconds,
  under a key named by the failure count that set it (``...:until:<n>``). Exactly one
  request gets each ``n`` from the atomic increment, so each until-key has one writer
  and clear-then-increment acts as a plain write.
* Times come from the app clock (``recovery.db.utcnow``), so tests move time instead of
  sleeping. Storage expiries (real time) only collect old keys.
* Check-then-record is not atomic: a burst of parallel requests could all pass the
  check before the first failure lands. So each check also takes an *in-flight* count
  on the key (atomic increment): an attempt goes ahead only if failures plus attempts in
  flight stay within the free failures, or, past them, if it is the only attempt in
  flight. A burst therefore gets at most the free failures, then one attempt per lock.
* Flask-Limiter itself keeps a plain route-level ceiling, ``LOGIN_RATE_LIMIT`` per client
  address, on every POST of the sign-in blueprints (a form the CSRF check refuses never
  gets that far): it bounds the raw rate of what the backoff does not count, such as
  successes and the two-factor pages' other forms.

The client address is ``request.remote_addr``: behind Heroku's router, app.py wraps the
app in Werkzeug's ``ProxyFix`` with ``TRUSTED_PROXY_HOPS``, and with 0 hops no header
that a client can set is believed.

An unknown email is answered exactly like a wrong password: its key counts and locks
the same way, and ``password_matches`` hashes against a dummy hash so the time spent is
the same. If the storage is down (Redis outage) sign-in fails closed, with an error.

For another step (the two-factor code): ``check(*keys)`` first (False: throttled, or
``attempt(*keys)`` for the seconds to wait); after a True, exactly one of
``failed(*keys)`` or ``succeeded(*keys)`` (or ``release(*keys)`` when the attempt was
never judged) with the same keys.
"""

from __future__ import annotations

import hashlib
import math
import time
from functools import cache

from flask import Blueprint, Flask, Response, current_app, request
from flask_limiter import Limiter, RequestLimit
from limits.storage import Storage
from werkzeug.security import check_password_hash, generate_password_hash

from recovery.db import utcnow
from recovery.models import StaffUser

EXTENSION = "admin.throttle"  # the app's Limiter, in app.extensions
PREFIX = "slot_recovery:throttle"

DEFAULTS = {
    "LOGIN_THROTTLE_FREE_FAILURES": 5,
    "LOGIN_THROTTLE_BASE_SECONDS": 1.0,
    "LOGIN_THROTTLE_MAX_SECONDS": 15 * 60,
    "LOGIN_THROTTLE_WINDOW_SECONDS": 24 * 60 * 60,
    # Flask-Limiter's notation; per client address, per endpoint, POST only.
    "LOGIN_RATE_LIMIT": "30 per minute",
}

# An attempt in flight that never reports back (a crash) stops counting after this.
IN_FLIGHT_SECONDS = 30
# Until-keys outlive their lock by this much (real time), then the storage drops them.
UNTIL_SLACK_SECONDS = 60


def init_throttle(app: Flask, *sign_in_blueprints: Blueprint) -> Limiter:
    """One Limiter per app (so the memory storage is per app), with the route-level
    ceiling on the POSTs of ``sign_in_blueprints``."""
    for name, value in DEFAULTS.items():
        app.config.setdefault(name, value)
    redis_url = app.config.get("REDIS_URL")
    limiter = Limiter(
        key_func=client_address,
        storage_uri=redis_url or "memory://",
        # Short timeouts, as the app's own Redis client: fail fast in an outage.
        storage_options={"socket_timeout": 2, "socket_connect_timeout": 2} if redis_url else {},
        strategy="fixed-window",
        key_prefix="slot_recovery:limiter",
        headers_enabled=False,
    )
    limiter.init_app(app)
    for blueprint in sign_in_blueprints:
        limiter.limit(
            lambda: current_app.config["LOGIN_RATE_LIMIT"],
            methods=["POST"],
            on_breach=_route_limit_breached,
        )(blueprint)
    app.extensions[EXTENSION] = limiter
    return limiter


# ---------------------------------------------------------------- keys


def client_address() -> str:
    """The client's address: ProxyFix (app.py) has already applied the trusted hops."""
    return request.remote_addr or "unknown"


def sign_in_keys(email: str) -> tuple[str, str]:
    """The password step's keys: the submitted account and the client's address.

    The email is lower-cased and hashed: the same key for any spelling, a bounded key
    length, and no addresses in Redis."""
    account = hashlib.sha256(email.strip().lower().encode()).hexdigest()
    return f"login:account:{account}", f"login:address:{client_address()}"


# ---------------------------------------------------------------- the attempt protocol


def attempt(*keys: str) -> int:
    """0 when an attempt may go ahead (it is then in flight on every key), else the
    seconds to wait (nothing is held)."""
    policy = _Policy.current()
    now_ms = _now_ms()
    waits = []
    for key in keys:
        in_flight = policy.storage.incr(_in_flight(key), IN_FLIGHT_SECONDS)
        failures = policy.storage.get(_failures(key))
        until_ms = policy.storage.get(_until(key, failures)) if failures else 0
        if until_ms > now_ms:
            waits.append((until_ms - now_ms) / 1000)
        elif in_flight > 1 and failures + in_flight > policy.free:
            # Another attempt on this key is being judged and this one would go past
            # the free failures: wait for its outcome.
            waits.append(1)
    if waits:
        release(*keys)
        return max(1, math.ceil(max(waits)))
    return 0


def check(*keys: str) -> bool:
    """True when the attempt may go ahead; follow it with ``failed`` or ``succeeded``."""
    return attempt(*keys) == 0


def failed(*keys: str) -> None:
    """The attempt that ``check`` let through failed: count it, lock when due."""
    policy = _Policy.current()
    now_ms = _now_ms()
    for key in keys:
        failures = policy.storage.incr(_failures(key), policy.window)
        if failures >= policy.free:
            seconds = policy.delay(failures)
            until = _until(key, failures)
            # The only writer of this ``failures`` value (see the module docstring).
            policy.storage.clear(until)
            policy.storage.incr(
                until,
                math.ceil(seconds) + UNTIL_SLACK_SECONDS,
                amount=now_ms + math.ceil(seconds * 1000),
            )
        _release_one(policy.storage, key)


def succeeded(*keys: str) -> None:
    """The attempt succeeded: forget the keys' failures (and their locks with them)."""
    policy = _Policy.current()
    for key in keys:
        policy.storage.clear(_failures(key))
        _release_one(policy.storage, key)


def release(*keys: str) -> None:
    """The attempt was let through but never judged: it stops counting as in flight."""
    storage = _Policy.current().storage
    for key in keys:
        _release_one(storage, key)


def _release_one(storage: Storage, key: str) -> None:
    # The counter stays at 0 rather than being deleted (a delete could race with another
    # attempt's increment and lose it). Its expiry restarts each time it goes from 0 to
    # 1, so it only lapses under 30 s of unbroken activity on one key; it then runs
    # negative and lets a few extra attempts in until it lapses again, 30 s later.
    storage.incr(_in_flight(key), IN_FLIGHT_SECONDS, amount=-1)


def _failures(key: str) -> str:
    return f"{PREFIX}:{key}:failures"


def _until(key: str, failures: int) -> str:
    return f"{PREFIX}:{key}:until:{failures}"


def _in_flight(key: str) -> str:
    return f"{PREFIX}:{key}:in_flight"


def _now_ms() -> int:
    return int(utcnow().timestamp() * 1000)


class _Policy:
    """The app's settings and storage, read once per call."""

    def __init__(self, app: Flask) -> None:
        cfg = app.config
        self.storage: Storage = app.extensions[EXTENSION].storage
        self.free = int(cfg["LOGIN_THROTTLE_FREE_FAILURES"])
        self.base = float(cfg["LOGIN_THROTTLE_BASE_SECONDS"])
        self.cap = float(cfg["LOGIN_THROTTLE_MAX_SECONDS"])
        self.window = int(cfg["LOGIN_THROTTLE_WINDOW_SECONDS"])

    @classmethod
    def current(cls) -> _Policy:
        return cls(current_app)

    def delay(self, failures: int) -> float:
        """Seconds locked after the ``failures``-th failure (the free ones lock nothing)."""
        doublings = min(failures - self.free, 40)  # 2**40 s is past any cap
        return min(self.base * 2**doublings, self.cap)


# ---------------------------------------------------------------- answers


def wait_text(seconds: int) -> str:
    """``45 seconds``, ``1 second``, ``3 minutes`` (minutes rounded up)."""
    count, unit = (seconds, "second") if seconds < 60 else (math.ceil(seconds / 60), "minute")
    return f"{count} {unit}{'' if count == 1 else 's'}"


def throttled_response(seconds: int) -> Response:
    """429, a plain message and ``Retry-After``: the same for every throttled attempt."""
    seconds = max(1, math.ceil(seconds))
    return Response(
        f"Too many sign-in attempts. Try again in {wait_text(seconds)}.",
        status=429,
        headers={"Retry-After": str(seconds)},
        mimetype="text/plain",
    )


def _route_limit_breached(limit: RequestLimit) -> Response:
    """Flask-Limiter's ceiling answers like the backoff does."""
    return throttled_response(math.ceil(limit.reset_at - time.time()))


# ---------------------------------------------------------------- password timing


@cache
def _dummy_hash() -> str:
    """A hash made like StaffUser.set_password's (same method and cost), made once."""
    return generate_password_hash("not-a-password: unknown accounts are checked against it")


def password_matches(user: StaffUser | None, password: str) -> bool:
    """The password check, hashing the same amount for an unknown email (its time must
    not tell that no such account exists)."""
    if user is None:
        check_password_hash(_dummy_hash(), password)
        return False
    return user.check_password(password)
