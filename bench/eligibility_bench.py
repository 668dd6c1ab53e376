"""B5: who is offered next, in one shop with 100,000 customers and 1,000,000 past bookings.

The query is the app's own (``recovery.eligibility.next_eligible_customer``) run through
its SQLAlchemy session, so the time includes building and reading the query, not only
PostgreSQL's part. The shop is made realistic enough for every condition to matter: 5%
of customers never opted in, 2% opted out, 1% were offered something in the last day,
5,000 future bookings can overlap a slot, and the settled history orders everyone.

It runs twice: without the eligibility index (dropped for the purpose, to show what it
buys), then on the schema as the migrations build it, and prints both query plans. Each
is timed with PostgreSQL's default plan caching and with the custom plans the app asks for.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from bench import data
from bench.stats import summary

INDEX = "ix_customers_shop_eligibility_order"  # migration 0004
INDEX_DDL = f"CREATE INDEX {INDEX} ON customers (shop_id, last_settled_at DESC NULLS LAST, id)"


def seed(app, customers: int, past_bookings: int, openings: int = 50) -> tuple[int, list[int]]:
    conn = data.connect()
    (shop,) = data.make_shops(app, conn, count=1, resources=50, cooldown_hours=24)
    p = {"shop": shop.shop_id, "service": shop.service_id, "owner": shop.owner_id}
    conn.execute(
        f"""
        INSERT INTO customers (shop_id, name, phone, sms_opt_in, opted_out_at, created_at)
        SELECT %(shop)s, 'Customer ' || g, {data.PHONE_SQL}, g %% 20 <> 0,
               CASE WHEN g %% 50 = 0 THEN now() - interval '10 days' END, now()
        FROM generate_series(1, %(n)s) AS g
        """,
        {**p, "n": customers},
    )
    first, count = conn.execute(
        "SELECT min(id), count(*) FROM customers WHERE shop_id = %(shop)s AND name <> 'Owner'",
        p,
    ).fetchone()
    resources = [r[0] for r in conn.execute("SELECT id FROM resources WHERE shop_id = %(shop)s", p)]
    p.update(first=first, count=count, resources=resources, r=len(resources))
    # Past bookings: each resource busy back to back, every customer a few times.
    conn.execute(
        """
        INSERT INTO appointments
            (shop_id, resource_id, customer_id, service_id, starts_at, ends_at, status, created_at,
             manage_token)
        SELECT %(shop)s, (%(resources)s::int[])[1 + g %% %(r)s],
               %(first)s + (g::bigint * 7919) %% %(count)s, %(service)s,
               t, t + interval '30 minutes', 'completed', t,
               md5(random()::text || clock_timestamp()::text)
        FROM generate_series(0, %(n)s - 1) AS g,
             LATERAL (SELECT date_trunc('hour', now()) - interval '1 day'
                             - (g / %(r)s) * interval '30 minutes' AS t) AS s
        """,
        {**p, "n": past_bookings},
    )
    conn.execute(
        """
        UPDATE customers c SET last_settled_at = m.latest
        FROM (SELECT customer_id, max(starts_at) AS latest FROM appointments
              WHERE shop_id = %(shop)s AND status = 'completed' GROUP BY customer_id) AS m
        WHERE c.id = m.customer_id
        """,
        p,
    )
    # Future bookings that can overlap the openings, then the openings themselves.
    conn.execute(
        """
        INSERT INTO appointments
            (shop_id, resource_id, customer_id, service_id, starts_at, ends_at, status, created_at,
             manage_token)
        SELECT %(shop)s, (%(resources)s::int[])[1 + g %% %(r)s],
               %(first)s + (g * 104729) %% %(count)s, %(service)s, t, t + interval '30 minutes',
               'booked', now(), md5(random()::text || clock_timestamp()::text)
        FROM generate_series(0, 4999) AS g,
             LATERAL (SELECT date_trunc('hour', now()) + interval '2 days'
                             + (g / %(r)s) * interval '30 minutes' AS t) AS s
        """,
        p,
    )
    conn.execute(
        """
        WITH source AS (
            INSERT INTO appointments
                (shop_id, resource_id, customer_id, service_id, starts_at, ends_at, status,
                 created_at, manage_token)
            SELECT %(shop)s, (%(resources)s::int[])[1 + g %% %(r)s], %(owner)s, %(service)s,
                   t, t + interval '30 minutes', 'cancelled', now(),
                   md5(random()::text || clock_timestamp()::text)
            FROM generate_series(0, %(openings)s) AS g,
                 LATERAL (SELECT date_trunc('hour', now()) + interval '2 days'
                                 + g * interval '1 hour' AS t) AS s
            RETURNING id, resource_id, starts_at, ends_at
        )
        INSERT INTO slot_openings
            (shop_id, resource_id, service_id, source_appointment_id, starts_at, ends_at,
             status, created_at)
        SELECT %(shop)s, resource_id, %(service)s, id, starts_at, ends_at, 'open', now()
        FROM source
        """,
        {**p, "openings": openings},
    )
    # 1% were offered a slot within the cooldown: an earlier opening, long expired.
    old = conn.execute(
        "SELECT id FROM slot_openings WHERE shop_id = %(shop)s ORDER BY id DESC LIMIT 1", p
    ).fetchone()[0]
    conn.execute("UPDATE slot_openings SET status = 'expired' WHERE id = %s", (old,))
    conn.execute(
        """
        INSERT INTO slot_offers
            (slot_opening_id, customer_id, phone, sender_number, channel, status, sent_at,
             expires_at)
        SELECT %(old)s, id, phone, (SELECT sms_from_number FROM shops WHERE id = %(shop)s),
               'sms', 'expired', now() - (id %% 20) * interval '1 hour',
               now() - (id %% 20) * interval '1 hour' + interval '15 minutes'
        FROM customers WHERE shop_id = %(shop)s AND id %% 100 = 0
        """,
        {**p, "old": old},
    )
    conn.execute("VACUUM ANALYZE")
    ids = [
        r[0]
        for r in conn.execute(
            "SELECT id FROM slot_openings WHERE shop_id = %(shop)s AND status = 'open'", p
        )
    ]
    conn.close()
    return shop.shop_id, ids


def _measure(
    app, opening_ids: list[int], iterations: int, custom_plans: bool, budget_s: float = 60
) -> tuple[dict, str]:
    """Time ``iterations`` calls (fewer if they take over ``budget_s``) in one transaction.

    psycopg prepares a statement on the server after its fifth execution, and PostgreSQL
    may then plan it once for any parameters (a generic plan). ``custom_plans`` makes it
    plan each execution for its actual parameters instead.
    """
    from sqlalchemy import text

    from recovery.db import db
    from recovery.models import SlotOpening
    from recovery.offers.eligibility import eligible_customers_query, next_eligible_customer

    now = datetime.now(UTC)
    with app.app_context():
        mode = "force_custom_plan" if custom_plans else "auto"
        db.session.execute(text(f"SET LOCAL plan_cache_mode = {mode}"))
        openings = [db.session.get(SlotOpening, i) for i in opening_ids]
        for o in openings:
            _ = o.shop  # loaded once, like the transition that calls it
        for o in openings[:20]:  # warm the connection and PostgreSQL's caches
            next_eligible_customer(db.session, o, now)
        times = []
        deadline = time.monotonic() + budget_s
        for i in range(iterations):
            if time.monotonic() > deadline and len(times) >= 50:
                break
            opening = openings[i % len(openings)]
            t0 = time.perf_counter()
            customer = next_eligible_customer(db.session, opening, now)
            times.append((time.perf_counter() - t0) * 1000)
            assert customer is not None
        query = eligible_customers_query(openings[0], now).limit(1)
        compiled = query.compile(
            dialect=db.engine.dialect, compile_kwargs={"render_postcompile": True}
        )
        raw = db.session.connection().connection.driver_connection
        with raw.cursor() as cur:
            cur.execute("EXPLAIN (ANALYZE, BUFFERS) " + str(compiled), compiled.params)
            plan = "\n".join(row[0] for row in cur.fetchall())
        db.session.rollback()
        db.session.remove()
    return summary(times), plan


def run(app, customers: int, past_bookings: int, iterations: int) -> dict:
    t0 = time.time()
    _, opening_ids = seed(app, customers, past_bookings)
    seeded_s = time.time() - t0
    conn = data.connect()
    conn.execute(f"DROP INDEX {INDEX}")
    conn.execute("ANALYZE customers")
    without, plan_without = _measure(app, opening_ids, iterations, custom_plans=False)
    without_custom, _ = _measure(app, opening_ids, iterations, custom_plans=True)
    conn.execute(INDEX_DDL)
    conn.execute("ANALYZE customers")
    conn.close()
    shipped, plan = _measure(app, opening_ids, iterations, custom_plans=False)
    shipped_custom, _ = _measure(app, opening_ids, iterations, custom_plans=True)
    return {
        "customers": customers,
        "past_bookings": past_bookings,
        "seed_seconds": round(seeded_s, 1),
        "without_index": without,
        "without_index_custom_plans": without_custom,
        "plan_without_index": plan_without,
        "as_shipped": shipped,
        "as_shipped_custom_plans": shipped_custom,
        "plan": plan,
        "index": INDEX_DDL,
    }
