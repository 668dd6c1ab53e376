"""Benchmark data, made in bulk with SQL (generate_series), never one ORM row at a time.

Shops, their resources and services are few and made with the ORM (so every column gets
the model's default); customers, bookings, openings and offers are made by set-based
INSERT ... SELECT statements.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

import psycopg
from flask import Flask

from bench.stack import database_url

OFFERED = "Offered"  # name prefix of customers who hold the seeded offers
SPARE = "Spare"  # name prefix of customers waiting to be offered next


@dataclass(frozen=True)
class ShopRow:
    shop_id: int
    service_id: int
    owner_id: int  # owns the bookings that are cancelled; never offered anything
    number: str  # the number its customers text


def connect() -> psycopg.Connection:
    dsn = database_url().replace("postgresql+psycopg://", "postgresql://", 1)
    conn = psycopg.connect(dsn, autocommit=True)
    conn.execute("CREATE SEQUENCE IF NOT EXISTS bench_phone_seq")
    conn.execute("CREATE SEQUENCE IF NOT EXISTS bench_shop_seq")
    return conn


def make_shops(
    app: Flask,
    conn: psycopg.Connection,
    count: int,
    resources: int = 2,
    deposit: bool = False,
    offer_ttl_minutes: int = 600,
    cooldown_hours: int = 24,
) -> list[ShopRow]:
    """Shops with their own sender number, resources, one service and an owner."""
    from recovery.db import db
    from recovery.models import Customer, DepositKind, Resource, Service, Shop

    rows = []
    with app.app_context():
        for _ in range(count):
            n = conn.execute("SELECT nextval('bench_shop_seq')").fetchone()[0]
            shop = Shop(
                name=f"Bench Salon {n}",
                sms_from_number=f"+4478{n:08d}",
                contact_phone="+442071234567",
                offer_ttl_minutes=offer_ttl_minutes,
                cooldown_hours=cooldown_hours,
                min_lead_minutes=60,
                # Benchmarks measure the loop at any hour: no quiet hours to wait out.
                quiet_hours_start=time(0, 0),
                quiet_hours_end=time(0, 0),
            )
            db.session.add(shop)
            db.session.flush()
            for r in range(resources):
                db.session.add(Resource(shop_id=shop.id, name=f"Chair {r + 1}"))
            service = Service(
                shop_id=shop.id,
                name="Cut",
                duration_minutes=30,
                price_minor=5000,
                deposit_kind=DepositKind.FIXED if deposit else DepositKind.NONE,
                deposit_value=2000 if deposit else 0,
            )
            owner = Customer(shop_id=shop.id, name="Owner", phone=phone(conn), sms_opt_in=False)
            db.session.add_all([service, owner])
            db.session.flush()
            rows.append(ShopRow(shop.id, service.id, owner.id, shop.sms_from_number))
        db.session.commit()
    return rows


def phone(conn: psycopg.Connection) -> str:
    n = conn.execute("SELECT nextval('bench_phone_seq')").fetchone()[0]
    return f"+4479{n:08d}"


PHONE_SQL = "'+4479' || lpad(nextval('bench_phone_seq')::text, 8, '0')"


def _arrays(shops: list[ShopRow]) -> dict:
    return {
        "shop": [s.shop_id for s in shops],
        "service": [s.service_id for s in shops],
        "owner": [s.owner_id for s in shops],
    }


def add_customers(conn, shops: list[ShopRow], per_shop: int, label: str, settled: bool) -> None:
    """``per_shop`` opted-in customers in each shop. Settled ones are offered first (their
    latest settled booking is recent); the others come last in the eligibility order."""
    settled_sql = "now() - (random() * interval '300 days')" if settled else "NULL"
    conn.execute(
        f"""
        INSERT INTO customers (shop_id, name, phone, sms_opt_in, last_settled_at, created_at)
        SELECT s.shop_id, %(label)s || ' ' || g, {PHONE_SQL}, true, {settled_sql}, now()
        FROM unnest(%(shop)s::int[]) AS s(shop_id), generate_series(1, %(n)s) AS g
        """,
        {**_arrays(shops), "label": label, "n": per_shop},
    )


def add_owner_bookings(
    conn, shops: list[ShopRow], per_shop: int, status: str, first_start: datetime
) -> None:
    """Bookings of each shop's owner, spread over its resources one hour apart."""
    conn.execute(
        """
        INSERT INTO appointments
            (shop_id, resource_id, customer_id, service_id, starts_at, ends_at, status, created_at,
             manage_token)
        SELECT s.shop_id, r.id, s.owner_id, s.service_id, t.starts_at,
               t.starts_at + interval '30 minutes', %(status)s, now(),
               md5(random()::text || clock_timestamp()::text)
        FROM unnest(%(shop)s::int[], %(service)s::int[], %(owner)s::int[])
             AS s(shop_id, service_id, owner_id)
        CROSS JOIN LATERAL (
            SELECT id, row_number() OVER (ORDER BY id) - 1 AS rn,
                   count(*) OVER () AS total
            FROM resources WHERE shop_id = s.shop_id
        ) AS r
        CROSS JOIN LATERAL (
            SELECT %(first)s::timestamptz + g * interval '1 hour' AS starts_at
            FROM generate_series(0, (%(n)s - 1 - r.rn) / r.total) AS g
        ) AS t
        """,
        {**_arrays(shops), "status": status, "first": first_start, "n": per_shop},
    )


def open_cancelled(conn, shops: list[ShopRow]) -> None:
    """One opening per cancelled owner booking (what cancelling a paid booking makes)."""
    conn.execute(
        """
        INSERT INTO slot_openings
            (shop_id, resource_id, service_id, source_appointment_id, starts_at, ends_at,
             status, created_at)
        SELECT a.shop_id, a.resource_id, a.service_id, a.id, a.starts_at, a.ends_at,
               'open', now()
        FROM appointments a
        WHERE a.customer_id = ANY(%(owner)s) AND a.status = 'cancelled'
          AND NOT EXISTS (SELECT 1 FROM slot_openings o WHERE o.source_appointment_id = a.id)
        """,
        _arrays(shops),
    )


def offer_openings(
    conn, shops: list[ShopRow], sent_at: datetime, first_expiry: datetime, spacing_s: float
) -> None:
    """Each open opening offered to one OFFERED customer of its shop; the n-th offer
    overall expires at ``first_expiry + n * spacing_s``, taking the shops in turn (so a
    shop's offers expire a whole round of shops apart, as its sender number's rate
    wants)."""
    conn.execute(
        """
        INSERT INTO slot_offers
            (slot_opening_id, customer_id, phone, sender_number, channel, status, sent_at,
             expires_at)
        SELECT o.id, c.id, c.phone, (SELECT sms_from_number FROM shops WHERE id = o.shop_id),
               'sms', 'sent', %(sent)s,
               %(first)s::timestamptz
                 + (row_number() OVER (ORDER BY o.rn, o.shop_id) - 1)
                   * %(spacing)s * interval '1 second'
        FROM (
            SELECT id, shop_id, row_number() OVER (PARTITION BY shop_id ORDER BY id) AS rn
            FROM slot_openings
            WHERE shop_id = ANY(%(shop)s) AND status = 'open'
              AND NOT EXISTS (
                  SELECT 1 FROM slot_offers x WHERE x.slot_opening_id = slot_openings.id
              )
        ) AS o
        JOIN (
            SELECT id, shop_id, phone, row_number() OVER (PARTITION BY shop_id ORDER BY id) AS rn
            FROM customers
            WHERE shop_id = ANY(%(shop)s) AND name LIKE %(offered)s
              AND NOT EXISTS (SELECT 1 FROM slot_offers x WHERE x.customer_id = customers.id)
        ) AS c USING (shop_id, rn)
        """,
        {
            **_arrays(shops),
            "sent": sent_at,
            "first": first_expiry,
            "spacing": spacing_s,
            "offered": OFFERED + " %",
        },
    )


HISTORY_REASON = "Cancelled by the customer"  # marks the history's own cancellations
SID_SQL = "'SM' || md5(random()::text || clock_timestamp()::text)"


def add_history(
    conn: psycopg.Connection,
    shop: ShopRow,
    per_day: int,
    first_day: date,
    days: int,
    customers: int,
    timezone: str = "Europe/London",
) -> dict:
    """``days`` days of a busy shop's past from ``first_day``, at ``per_day`` bookings a
    day on every resource (24 minutes apart from 08:00 shop time), made set-based.

    Proportions: 1 booking in 12 was cancelled by its customer and opened a slot; 11 in
    20 of those openings were filled (their winner's booking is a recovered booking), the
    rest expired; each opening was offered to 1-4 customers in turn (15 minutes each; the
    last offer of a filled one accepted, others declined or expired). Texts: every offer
    (1% failed after the provider took them), every YES/NO and its TwiML answer, a
    confirmation per booking, a reminder 24 h before each kept booking made earlier than
    that, a pay link per recovered booking. Deposits: every recovered booking and one
    booking in three paid one through Stripe (92% succeeded, 5% failed, 3% cancelled);
    a cancelled booking's succeeded deposit was refunded. Lunch blocks on every chair.
    Returns the row counts."""
    p = {
        "shop": shop.shop_id,
        "service": shop.service_id,
        "number": shop.number,
        "first": first_day,
        "days": days,
        "per_day": per_day,
        "tz": timezone,
        "n": customers,
        "reason": HISTORY_REASON,
    }
    conn.execute(
        f"""
        INSERT INTO customers (shop_id, name, phone, sms_opt_in, last_settled_at, created_at)
        SELECT %(shop)s, 'Regular ' || g, {PHONE_SQL}, true,
               now() - (g %% 90) * interval '1 day', %(first)s::timestamptz - interval '30 days'
        FROM generate_series(1, %(n)s) AS g
        """,
        p,
    )
    p["c0"] = conn.execute(
        "SELECT min(id) FROM customers WHERE shop_id = %(shop)s AND name LIKE 'Regular %%'", p
    ).fetchone()[0]
    # Bookings: made 3-21 days ahead; a cancelled one 2-47 hours before its start.
    conn.execute(
        """
        INSERT INTO appointments
            (shop_id, resource_id, customer_id, service_id, starts_at, ends_at, status,
             created_at, cancelled_at, cancellation_reason, manage_token)
        SELECT %(shop)s, r.id, %(c0)s + (r.id * 31 + d * 7 + k * 13) %% %(n)s, %(service)s,
               t.starts_at, t.starts_at + interval '20 minutes',
               CASE WHEN x.cancelled THEN 'cancelled' ELSE 'completed' END,
               t.starts_at - (3 + (r.id + d + k) %% 19) * interval '1 day',
               CASE WHEN x.cancelled THEN t.starts_at - (2 + (d + k) %% 46) * interval '1 hour'
               END,
               CASE WHEN x.cancelled THEN %(reason)s END,
               gen_random_uuid()::text
        FROM resources r, generate_series(0, %(days)s - 1) AS d,
             generate_series(0, %(per_day)s - 1) AS k,
             LATERAL (
                 SELECT ((%(first)s::date + d) + time '08:00' + k * interval '24 minutes')
                        AT TIME ZONE %(tz)s AS starts_at
             ) AS t,
             LATERAL (SELECT (r.id * 7 + d * 3 + k * 11) %% 12 = 0 AS cancelled) AS x
        WHERE r.shop_id = %(shop)s
        """,
        p,
    )
    # One opening per cancellation, offered to 1 + id % 4 customers 15 minutes apart.
    conn.execute(
        """
        INSERT INTO slot_openings
            (shop_id, resource_id, service_id, source_appointment_id, starts_at, ends_at,
             status, created_at, filled_at, expired_at)
        SELECT a.shop_id, a.resource_id, a.service_id, a.id, a.starts_at, a.ends_at,
               CASE WHEN a.id %% 20 < 11 THEN 'filled' ELSE 'expired' END,
               a.cancelled_at,
               CASE WHEN a.id %% 20 < 11
                    THEN a.cancelled_at + (a.id %% 4) * interval '15 minutes'
                         + interval '3 minutes' END,
               CASE WHEN a.id %% 20 >= 11
                    THEN a.cancelled_at + (1 + a.id %% 4) * interval '15 minutes' END
        FROM appointments a
        WHERE a.shop_id = %(shop)s AND a.cancellation_reason = %(reason)s
        """,
        p,
    )
    conn.execute(
        """
        INSERT INTO slot_offers
            (slot_opening_id, customer_id, channel, phone, sender_number, status, sent_at,
             expires_at, responded_at)
        SELECT o.id, c.id, 'sms', c.phone, %(number)s, s.status,
               o.created_at + (i - 1) * interval '15 minutes',
               o.created_at + i * interval '15 minutes',
               CASE WHEN s.status IN ('accepted', 'declined')
                    THEN o.created_at + (i - 1) * interval '15 minutes'
                         + interval '3 minutes' END
        FROM slot_openings o
        JOIN appointments a ON a.id = o.source_appointment_id
        CROSS JOIN LATERAL generate_series(1, 1 + a.id %% 4) AS i
        JOIN customers c ON c.id = %(c0)s + (o.id * 37 + i * 101) %% %(n)s
        CROSS JOIN LATERAL (
            SELECT CASE WHEN i = 1 + a.id %% 4 AND o.status = 'filled' THEN 'accepted'
                        WHEN (o.id + i) %% 3 = 0 THEN 'declined' ELSE 'expired' END AS status
        ) AS s
        WHERE o.shop_id = %(shop)s AND a.cancellation_reason = %(reason)s
        """,
        p,
    )
    # The winners' bookings (recovered), made when they said YES.
    conn.execute(
        """
        INSERT INTO appointments
            (shop_id, resource_id, customer_id, service_id, starts_at, ends_at, status,
             created_at, source_slot_opening_id, manage_token)
        SELECT o.shop_id, o.resource_id, f.customer_id, o.service_id, o.starts_at, o.ends_at,
               'completed', f.responded_at, o.id, gen_random_uuid()::text
        FROM slot_openings o
        JOIN slot_offers f ON f.slot_opening_id = o.id AND f.status = 'accepted'
        WHERE o.shop_id = %(shop)s
        """,
        p,
    )
    _history_messages(conn, p)
    _history_payments(conn, p)
    conn.execute(
        """
        INSERT INTO busy_blocks (shop_id, resource_id, starts_at, ends_at, reason, source,
                                 created_at)
        SELECT %(shop)s, r.id, t.starts_at, t.starts_at + interval '45 minutes', 'Lunch',
               'manual', t.starts_at - interval '30 days'
        FROM resources r, generate_series(0, %(days)s - 1) AS d,
             LATERAL (SELECT ((%(first)s::date + d) + time '13:00') AT TIME ZONE %(tz)s
                      AS starts_at) AS t
        WHERE r.shop_id = %(shop)s
        """,
        p,
    )
    counts = {}
    for name, sql in (
        ("bookings", "SELECT count(*) FROM appointments WHERE shop_id = %(shop)s"),
        ("cancelled", "SELECT count(*) FROM appointments WHERE shop_id = %(shop)s "
                      "AND cancellation_reason = %(reason)s"),
        ("openings_filled", "SELECT count(*) FROM slot_openings WHERE shop_id = %(shop)s "
                            "AND status = 'filled'"),
        ("openings_expired", "SELECT count(*) FROM slot_openings WHERE shop_id = %(shop)s "
                             "AND status = 'expired'"),
        ("offers", "SELECT count(*) FROM slot_offers WHERE sender_number = %(number)s"),
        ("messages", "SELECT count(*) FROM messages WHERE shop_id = %(shop)s"),
        ("payments", "SELECT count(*) FROM payments p JOIN appointments a "
                     "ON a.id = p.appointment_id WHERE a.shop_id = %(shop)s"),
    ):  # fmt: skip
        counts[name] = conn.execute(sql, p).fetchone()[0]
    return counts


HISTORY_TEXTS = {
    "offer": "Bench Salon: a Cut slot just opened at 10:00 on Tue 14 Mar. Reply YES to book "
    "it (deposit £20 by card) or NO to pass. This offer ends in 15 minutes.",
    "yes_reply": "Booked! Pay your £20 deposit within 15 minutes to keep it: "
    "https://example.test/pay/abcdefghijklmnopqrstuvwx",
    "no_reply": "No problem, we will offer it to the next customer.",
    "booked": "Bench Salon: you are booked for a Cut at 10:00 on Tue 14 Mar. Change or cancel: "
    "https://example.test/b/abcdefghijklmnopqrstuv",
    "reminder": "Bench Salon: a reminder of your Cut tomorrow at 10:00. Need to change or "
    "cancel? https://example.test/b/abcdefghijklmnopqrstuv (free until 24 hours before).",
    "payment_request": "Bench Salon: pay your £20 deposit to keep your slot: "
    "https://example.test/pay/abcdefghijklmnopqrstuvwx",
}


def _history_messages(conn: psycopg.Connection, p: dict) -> None:
    """The history's texts (see ``add_history``), with the app's own segment count and
    cost estimate for each body."""
    from recovery.messaging.gateway import estimated_cost_minor
    from recovery.messaging.gsm import segments

    for key, body in HISTORY_TEXTS.items():
        p = {**p, key: body, f"{key}_seg": segments(body),
             f"{key}_cost": estimated_cost_minor(body, "GBP")}  # fmt: skip
    out = """
        INSERT INTO messages
            (shop_id, customer_id, slot_offer_id, appointment_id, direction, from_number,
             to_number, body, purpose, provider_sid, status, segments, cost_estimate_minor,
             created_at, sent_at, send_attempts, sending_at)
    """
    # Offer texts; 1 in 100 failed after the provider took it (still billed).
    conn.execute(
        out
        + f"""
        SELECT %(shop)s, f.customer_id, f.id, NULL, 'outbound', %(number)s::varchar, f.phone,
               %(offer)s, 'offer', {SID_SQL},
               CASE WHEN f.id %% 100 = 0 THEN 'failed' ELSE 'delivered' END,
               %(offer_seg)s, %(offer_cost)s,
               f.sent_at, f.sent_at + interval '1 second', 1, f.sent_at
        FROM slot_offers f WHERE f.sender_number = %(number)s
        """,
        p,
    )
    # The customer's YES or NO, and the TwiML answer the webhook recorded.
    conn.execute(
        out
        + f"""
        SELECT %(shop)s, f.customer_id, NULL::int, NULL::int, 'inbound', f.phone,
               %(number)s::varchar, CASE WHEN f.status = 'accepted' THEN 'YES' ELSE 'NO' END,
               'inbound', {SID_SQL}, 'received', 1, 0, f.responded_at, NULL::timestamptz, 0,
               NULL::timestamptz
        FROM slot_offers f WHERE f.sender_number = %(number)s AND f.responded_at IS NOT NULL
        UNION ALL
        SELECT %(shop)s, f.customer_id, NULL, NULL, 'outbound', %(number)s::varchar, f.phone,
               r.body, 'reply', NULL, 'sent', r.segments, r.cost, f.responded_at,
               f.responded_at, 0, NULL
        FROM slot_offers f
        CROSS JOIN LATERAL (
            SELECT %(yes_reply)s, %(yes_reply_seg)s, %(yes_reply_cost)s
            WHERE f.status = 'accepted'
            UNION ALL
            SELECT %(no_reply)s, %(no_reply_seg)s, %(no_reply_cost)s
            WHERE f.status <> 'accepted'
        ) AS r(body, segments, cost)
        WHERE f.sender_number = %(number)s AND f.responded_at IS NOT NULL
        """,
        p,
    )
    # A confirmation per booking, a reminder 24 h before each kept booking made earlier,
    # a pay link per recovered booking.
    conn.execute(
        out
        + f"""
        SELECT %(shop)s, a.customer_id, NULL, a.id, 'outbound', %(number)s::varchar, c.phone,
               m.body, m.purpose, {SID_SQL}, 'delivered', m.segments, m.cost,
               m.at, m.at + interval '1 second', 1, m.at
        FROM appointments a
        JOIN customers c ON c.id = a.customer_id
        CROSS JOIN LATERAL (
            SELECT 'booked', a.created_at, %(booked)s, %(booked_seg)s, %(booked_cost)s
            UNION ALL
            SELECT 'reminder', a.starts_at - interval '24 hours', %(reminder)s,
                   %(reminder_seg)s, %(reminder_cost)s
            WHERE a.status = 'completed' AND a.created_at < a.starts_at - interval '24 hours'
            UNION ALL
            SELECT 'payment_request', a.created_at, %(payment_request)s,
                   %(payment_request_seg)s, %(payment_request_cost)s
            WHERE a.source_slot_opening_id IS NOT NULL
        ) AS m(purpose, at, body, segments, cost)
        WHERE a.shop_id = %(shop)s AND a.customer_id >= %(c0)s
        """,
        p,
    )
    conn.execute(
        """
        INSERT INTO reminders (appointment_id, starts_at, message_id, created_at)
        SELECT a.id, a.starts_at, m.id, m.created_at
        FROM messages m JOIN appointments a ON a.id = m.appointment_id
        WHERE m.shop_id = %(shop)s AND m.purpose = 'reminder'
        """,
        p,
    )


def _history_payments(conn: psycopg.Connection, p: dict) -> None:
    """Stripe deposits of the history's bookings (see ``add_history``), and refunds."""
    conn.execute(
        """
        INSERT INTO payments
            (appointment_id, provider, provider_ref, token, amount_minor, currency, status,
             refunded_minor, succeeded_at, created_at, updated_at)
        SELECT a.id, 'stripe', 'pi_' || md5(a.id::text || random()::text),
               md5(random()::text || a.id::text), 2000, 'GBP', s.status,
               CASE WHEN s.status = 'succeeded' AND a.status = 'cancelled' THEN 2000 ELSE 0 END,
               CASE WHEN s.status = 'succeeded' THEN a.created_at + interval '4 minutes' END,
               a.created_at, a.created_at + interval '4 minutes'
        FROM appointments a
        CROSS JOIN LATERAL (
            SELECT CASE WHEN a.id %% 100 < 92 THEN 'succeeded'
                        WHEN a.id %% 100 < 97 THEN 'failed' ELSE 'canceled' END AS status
        ) AS s
        WHERE a.shop_id = %(shop)s AND a.customer_id >= %(c0)s
          AND (a.source_slot_opening_id IS NOT NULL OR a.id %% 3 = 0)
        """,
        p,
    )
    conn.execute(
        """
        INSERT INTO refunds
            (payment_id, amount_minor, reason, status, idempotency_key, provider_ref,
             created_at, completed_at)
        SELECT pay.id, pay.refunded_minor, 'cancelled in time', 'succeeded',
               'bench-refund-' || pay.id, 're_' || md5(pay.id::text),
               a.cancelled_at, a.cancelled_at + interval '2 seconds'
        FROM payments pay JOIN appointments a ON a.id = pay.appointment_id
        WHERE a.shop_id = %(shop)s AND pay.refunded_minor > 0
        """,
        p,
    )


OPENINGS_PER_SHOP = 20  # B4's shape: 20 openings a shop, 40 customers waiting in each


def seed_due_offers(app: Flask, conn: psycopg.Connection, offers: int) -> list[ShopRow]:
    """``offers`` offers already due (sent 16 minutes ago, expired a minute ago, their
    exact-time jobs lost as after an outage), one per opening, in shops of B4's shape."""
    shops = make_shops(app, conn, count=max(1, offers // OPENINGS_PER_SHOP), resources=2)
    per_shop = offers // len(shops)
    add_customers(conn, shops, per_shop=per_shop, label=OFFERED, settled=False)
    add_customers(conn, shops, per_shop=2 * per_shop, label=SPARE, settled=True)
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=3)
    add_owner_bookings(conn, shops, per_shop, "cancelled", start)
    open_cancelled(conn, shops)
    now = datetime.now(UTC)
    offer_openings(
        conn,
        shops,
        sent_at=now - timedelta(minutes=16),
        first_expiry=now - timedelta(minutes=1),
        spacing_s=0,
    )
    conn.execute("ANALYZE")
    return shops
