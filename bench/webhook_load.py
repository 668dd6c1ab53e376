"""B3: the inbound SMS webhook at fixed request rates (open loop), through gunicorn.

Requests are signed like Twilio signs them and built before the clock starts; an asyncio
client sends request i at ``start + i / rate`` on its own connection whether or not the
earlier ones were answered (a fixed rate, as Twilio delivers, so a slow server cannot slow
the load down and hide its own latency). Mix, in turn: YES from a customer holding a live
offer (books the slot), NO from another (declines: the next customer is offered and
texted), HELP from a known customer, and any text from an unknown number.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import secrets
import time
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

from twilio.request_validator import RequestValidator

from bench import data
from bench.fake_provider import ACCOUNT_SID, AUTH_TOKEN
from bench.stack import Stack
from bench.stats import summary

_sids = itertools.count(1)


def _request(stack: Stack, params: dict[str, str]) -> bytes:
    url = stack.base_url + "/webhooks/twilio/sms"
    signature = RequestValidator(AUTH_TOKEN).compute_signature(url, params)
    body = urlencode(params).encode()
    head = (
        "POST /webhooks/twilio/sms HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{stack.web_port}\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        f"X-Twilio-Signature: {signature}\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode() + body


KINDS = ("YES", "NO", "HELP", "UNKNOWN")
BODIES = {"YES": "Yes", "NO": "no", "HELP": "HELP", "UNKNOWN": "hello?"}


def mix(app, per_kind: int, rng: random.Random) -> list[tuple[str, dict[str, str]]]:
    """B3's data for ``4 * per_kind`` requests, and the requests' (kind, form) in B3's
    order (also what ``bench.profile_webhook`` profiles)."""
    conn = data.connect()
    shops = data.make_shops(app, conn, count=20, resources=5, deposit=True)
    per_shop = -(-2 * per_kind // len(shops))  # live offers: one per YES and per NO
    data.add_customers(conn, shops, per_shop=per_shop, label=data.OFFERED, settled=False)
    data.add_customers(conn, shops, per_shop=per_shop, label=data.SPARE, settled=True)
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=3)
    data.add_owner_bookings(conn, shops, per_shop, "cancelled", start)
    data.open_cancelled(conn, shops)
    data.offer_openings(
        conn,
        shops,
        sent_at=datetime.now(UTC),
        first_expiry=datetime.now(UTC) + timedelta(hours=2),
        spacing_s=0,
    )
    conn.execute("ANALYZE")
    holders = conn.execute(
        "SELECT c.phone, s.sms_from_number FROM slot_offers o "
        "JOIN customers c ON c.id = o.customer_id JOIN shops s ON s.id = c.shop_id "
        "WHERE o.status = 'sent' AND c.shop_id = ANY(%s) ORDER BY random()",
        ([s.shop_id for s in shops],),
    ).fetchall()
    conn.close()
    yes_from, no_from = holders[:per_kind], holders[per_kind : 2 * per_kind]
    mix = []
    for i in range(4 * per_kind):
        kind = KINDS[i % 4]
        if kind == "YES":
            sender, to = yes_from[i // 4]
        elif kind == "NO":
            sender, to = no_from[i // 4]
        elif kind == "HELP":
            sender, to = rng.choice(holders)
        else:
            sender, to = f"+4474{rng.randrange(10**8):08d}", shops[0].number
        form = {
            "MessageSid": "SM" + secrets.token_hex(16),  # never one an earlier run used
            "AccountSid": ACCOUNT_SID,
            "From": sender,
            "To": to,
            "Body": BODIES[kind],
            "NumSegments": "1",
        }
        mix.append((kind, form))
    return mix


def prepare(stack: Stack, app, rate: int, seconds: int) -> tuple[list[bytes], list[str]]:
    total = rate * seconds
    requests = mix(app, -(-total // 4), random.Random(rate))[:total]
    return [_request(stack, form) for _, form in requests], [kind for kind, _ in requests]


async def _send(port: int, payload: bytes) -> tuple[float, int]:
    started = time.perf_counter()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(payload)
        await writer.drain()
        response = await asyncio.wait_for(reader.read(), timeout=30)
        writer.close()
        status = int(response.split(b" ", 2)[1]) if response else 0
    except (TimeoutError, OSError, ValueError, IndexError):
        status = 0
    return (time.perf_counter() - started) * 1000, status


async def _open_loop(port: int, requests: list[bytes], rate: int) -> tuple[list, float]:
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.2
    tasks, worst_lag = [], 0.0
    for i, payload in enumerate(requests):
        at = start + i / rate
        delay = at - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        worst_lag = max(worst_lag, loop.time() - at)
        tasks.append(asyncio.create_task(_send(port, payload)))
    return await asyncio.gather(*tasks), worst_lag


def warm_up(stack: Stack, rate: int = 20, seconds: int = 5) -> None:
    """Unmeasured HELP-from-strangers traffic, so every gunicorn worker has loaded its
    lazy imports and SQLAlchemy has compiled its statements before the clock runs."""
    requests = [
        _request(
            stack,
            {
                "MessageSid": f"SM{next(_sids):032x}",
                "AccountSid": ACCOUNT_SID,
                "From": f"+4474{i:08d}",
                "To": "+447700900000",
                "Body": "HELP",
            },
        )
        for i in range(rate * seconds)
    ]
    asyncio.run(_open_loop(stack.web_port, requests, rate))


def run_rate(stack: Stack, app, rate: int, seconds: int) -> dict:
    from bench.profile_webhook import cpu_snapshot, ms_per_request

    requests, kinds = prepare(stack, app, rate, seconds)
    before = cpu_snapshot(stack)
    results, worst_lag = asyncio.run(_open_loop(stack.web_port, requests, rate))
    # Process CPU time over requests, per role (web: gunicorn's master and workers).
    cpu_ms = ms_per_request(before, cpu_snapshot(stack), len(requests))
    latencies = [ms for ms, _ in results]
    errors = sum(1 for _, status in results if status != 200)
    by_kind = {}
    for kind in ("YES", "NO", "HELP", "UNKNOWN"):
        picked = [ms for (ms, _), k in zip(results, kinds, strict=True) if k == kind]
        by_kind[kind] = summary(picked)
    return {
        "rate": rate,
        "seconds": seconds,
        **summary(latencies),
        "errors": errors,
        "sender_worst_lag_ms": round(worst_lag * 1000, 1),
        "cpu_ms_per_request": cpu_ms,
        "by_kind": by_kind,
    }
