"""B8: the admin calendar and the dashboard of a shop of 10 resources with a year behind it.

The shop has 30 bookings a day on each resource: next week (2,100 bookings, plus slot
openings in every state, live offers and busy blocks) and, with ``history_days``, a year of
past days at the same density with its cancellations, openings, offers, texts and deposits
(``bench.data.add_history``). Pages are asked for through the Flask test client as a
logged-in staff member, so each time covers the whole request: login session, the
queries, laying out the grid and rendering the template. No network, no gunicorn: what is
measured is the app's own work. Timed: next week's week view, one day of it, and the
dashboard (``bench.dashboard_bench``) for its default period and for a whole year.
``python -m bench.calendar_bench [--quick]`` runs it alone; ``python -m bench --only B8``
runs it with the others.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from datetime import date, timedelta

from bench import dashboard_bench, data
from bench.stats import time_page

PASSWORD = "bench-calendar-pw"
EMAIL = "calendar@bench.example"
CSRF_RE = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')
ITEM_RE = re.compile(r'data-kind="booking"')


def seed(app, resources: int, per_day: int, first_day: date, history_days: int = 0) -> dict:
    """One shop, ``resources`` chairs, ``per_day`` bookings a day on each for seven days
    from ``first_day`` (08:00 onwards, back to back), and on each chair and day a lunch
    block and three openings (open with a live offer, filled, expired); then
    ``history_days`` past days up to yesterday (``data.add_history``). Returns the shop id
    and the history's row counts."""
    conn = data.connect()
    (shop,) = data.make_shops(app, conn, count=1, resources=resources, deposit=True)
    p = {"shop": shop.shop_id, "service": shop.service_id, "owner": shop.owner_id}
    customers = max(200, resources * 7 * 3)
    conn.execute(
        f"""
        INSERT INTO customers (shop_id, name, phone, sms_opt_in, created_at)
        SELECT %(shop)s, 'Client ' || g, {data.PHONE_SQL}, true, now()
        FROM generate_series(1, %(n)s) AS g
        """,
        {**p, "n": customers},
    )
    first_customer = conn.execute(
        "SELECT min(id) FROM customers WHERE shop_id = %(shop)s AND name LIKE 'Client %%'", p
    ).fetchone()[0]
    p.update(first=first_customer, count=customers, day=first_day, per_day=per_day)
    # Bookings: 24 minutes apart from 08:00 shop time, 20 minutes long; mostly booked, some
    # waiting for their deposit, some completed.
    conn.execute(
        """
        INSERT INTO appointments
            (shop_id, resource_id, customer_id, service_id, starts_at, ends_at, status, created_at,
             manage_token)
        SELECT %(shop)s, r.id, %(first)s + (r.id * 31 + d * 7 + k) %% %(count)s, %(service)s,
               t.starts_at, t.starts_at + interval '20 minutes',
               CASE WHEN k %% 10 = 3 THEN 'pending_payment'
                    WHEN k %% 10 = 7 THEN 'completed' ELSE 'booked' END,
               now(), gen_random_uuid()::text
        FROM resources r, generate_series(0, 6) AS d, generate_series(0, %(per_day)s - 1) AS k,
             LATERAL (
                 SELECT ((%(day)s::date + d) + time '08:00' + k * interval '24 minutes')
                        AT TIME ZONE 'Europe/London' AS starts_at
             ) AS t
        WHERE r.shop_id = %(shop)s
        """,
        p,
    )
    # Openings after the bookings (20:00, 20:30, 21:00), each from a cancelled booking.
    conn.execute(
        """
        WITH source AS (
            INSERT INTO appointments
                (shop_id, resource_id, customer_id, service_id, starts_at, ends_at, status,
                 cancelled_at, created_at, manage_token)
            SELECT %(shop)s, r.id, %(owner)s, %(service)s, t.starts_at,
                   t.starts_at + interval '30 minutes', 'cancelled', now(), now(),
                   gen_random_uuid()::text
            FROM resources r, generate_series(0, 6) AS d, generate_series(0, 2) AS k,
                 LATERAL (
                     SELECT ((%(day)s::date + d) + time '20:00' + k * interval '30 minutes')
                            AT TIME ZONE 'Europe/London' AS starts_at
                 ) AS t
            WHERE r.shop_id = %(shop)s
            RETURNING id, resource_id, starts_at, ends_at
        )
        INSERT INTO slot_openings
            (shop_id, resource_id, service_id, source_appointment_id, starts_at, ends_at,
             status, created_at)
        SELECT %(shop)s, resource_id, %(service)s, id, starts_at, ends_at,
               (ARRAY['open', 'filled', 'expired'])[1 + (row_number() OVER (ORDER BY id)) %% 3],
               now()
        FROM source
        """,
        p,
    )
    conn.execute(
        """
        INSERT INTO slot_offers
            (slot_opening_id, customer_id, channel, phone, sender_number, status, sent_at,
             expires_at)
        SELECT o.id, c.id, 'sms', c.phone, %(number)s, 'sent', now(), now() + interval '15 minutes'
        FROM (SELECT id, row_number() OVER (ORDER BY id) AS rn FROM slot_openings
              WHERE shop_id = %(shop)s AND status = 'open') AS o
        JOIN (SELECT id, phone, row_number() OVER (ORDER BY id) AS rn FROM customers
              WHERE shop_id = %(shop)s AND name LIKE 'Client %%') AS c USING (rn)
        """,
        {**p, "number": shop.number},
    )
    # Busy time: lunch on every chair (between bookings is fine: blocks may overlap them)
    # and the whole shop closed one evening.
    conn.execute(
        """
        INSERT INTO busy_blocks (shop_id, resource_id, starts_at, ends_at, reason, source,
                                 created_at)
        SELECT %(shop)s, r.id, t.starts_at, t.starts_at + interval '45 minutes', 'Lunch',
               'manual', now()
        FROM resources r, generate_series(0, 6) AS d,
             LATERAL (SELECT ((%(day)s::date + d) + time '13:00') AT TIME ZONE 'Europe/London'
                      AS starts_at) AS t
        WHERE r.shop_id = %(shop)s
        UNION ALL
        SELECT %(shop)s, NULL, t.starts_at, t.starts_at + interval '2 hours', 'Team meeting',
               'manual', now()
        FROM LATERAL (SELECT ((%(day)s::date + 2) + time '21:30') AT TIME ZONE 'Europe/London'
                      AS starts_at) AS t
        """,
        p,
    )
    history = {}
    if history_days:
        history = data.add_history(
            conn,
            shop,
            per_day,
            first_day=date.today() - timedelta(days=history_days),
            days=history_days,
            customers=max(400, resources * per_day * 10),
        )
    conn.execute("VACUUM ANALYZE")
    conn.close()
    _staff(app, shop.shop_id)
    return {"shop_id": shop.shop_id, "history": history}


def _staff(app, shop_id: int) -> None:
    from recovery.db import db
    from recovery.models import StaffUser

    with app.app_context():
        user = StaffUser(shop_id=shop_id, email=EMAIL, role="staff")
        user.set_password(PASSWORD)
        db.session.add(user)
        db.session.commit()


def _logged_in(app):
    client = app.test_client()
    page = client.get("/login").get_data(as_text=True)
    token = CSRF_RE.search(page).group(1)
    response = client.post(
        "/login", data={"csrf_token": token, "email": EMAIL, "password": PASSWORD}
    )
    assert response.status_code == 302, response.status_code
    return client


def _time(client, url: str, requests: int, expect_bookings: int) -> dict:
    timed, page = time_page(client, url, requests)
    shown = len(ITEM_RE.findall(page))
    assert shown == expect_bookings, (shown, expect_bookings)
    return {**timed, "bytes": len(page.encode()), "bookings_shown": shown}


def run(app, resources: int, per_day: int, requests: int, history_days: int = 0) -> dict:
    first_day = date.today() + timedelta(days=7)
    first_day -= timedelta(days=first_day.weekday())  # next week's Monday
    t0 = time.time()
    seeded = seed(app, resources, per_day, first_day, history_days)
    seeded_s = time.time() - t0
    client = _logged_in(app)
    week = f"/admin/calendar/?view=week&date={first_day.isoformat()}"
    day = f"/admin/calendar/?view=day&date={(first_day + timedelta(days=2)).isoformat()}"
    return {
        "resources": resources,
        "bookings_per_day": per_day,
        "bookings_in_week": resources * per_day * 7,
        "history_days": history_days,
        "history": seeded["history"],
        "seed_seconds": round(seeded_s, 1),
        "week": _time(client, week, requests, resources * per_day * 7),
        "day": _time(client, day, requests, resources * per_day),
        **dashboard_bench.run(client, requests),
    }


def main() -> int:
    from bench.__main__ import bench_app
    from bench.stack import recreate_database

    parser = argparse.ArgumentParser(prog="python -m bench.calendar_bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a small shop, a few requests")
    args = parser.parse_args()
    recreate_database()
    app = bench_app()
    sizes = (3, 10, 10, 365) if args.quick else (10, 30, 30, 365)
    result = run(app, *sizes)
    print(f"{result['resources']} resources x {result['bookings_per_day']} bookings a day, "
          f"{result['history_days']} days of history {result['history']}")  # fmt: skip
    for page in ("week", "day", "dashboard", "dashboard_year"):
        s = result[page]
        print(
            f"{page}: {s['n']} requests, p50 {s['p50']:.1f} ms, p99 {s['p99']:.1f} ms, "
            f"max {s['max']:.1f} ms, {s['bytes']:,} bytes"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
