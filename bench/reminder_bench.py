"""B7: 10,000 reminders due in one minute, each sent through the real processes.

100 shops (own sender numbers, quiet hours off) each get booked appointments whose
reminder time (``starts_at - shop.reminder_hours``, ``recovery.messaging.reminders``)
falls evenly inside one minute that starts ~20 s after the seeding ends; the bookings
were made two days earlier, so each one is due a reminder. Every reminder's exact-time
job is then scheduled exactly as production does: the app's ``RQDispatcher`` turns a
``SEND_REMINDER`` effect at the reminder time into rq-scheduler's
``enqueue_at(at, "jobs.tasks.send_reminder", appointment_id,
job_id="at-send_reminder-<id>")``. From there it is the stack's work: rqscheduler moves
each job onto the queue when due, a worker runs ``send_reminder`` (which queues the text)
and the text is sent through the Twilio SDK to the fake provider, which logs when it
accepted it. The stack runs with ``SMS_SENDER_RATE=0`` (the per-sender rate limit off).

Measured from the start of the due minute: when the fake provider had accepted all of
the reminders, and each one's lateness (its acceptance minus its own reminder time).
A shop's bookings all start within the same minute, so each is on its own resource (the
resources exist only for that: bookings on one resource may not overlap).
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime, timedelta

from bench import data
from bench.stack import Stack, wait_for
from bench.stats import summary

LEAD_S = 20  # from the end of the seeding to the start of the due minute


def seed(app, reminders: int, shops: int) -> list[data.ShopRow]:
    """The shops, one resource and one opted-in customer per reminder to come."""
    conn = data.connect()
    rows = data.make_shops(app, conn, count=shops, resources=1)
    per_shop = math.ceil(reminders / shops)
    conn.execute(
        """
        INSERT INTO resources (shop_id, name, active)
        SELECT s, 'Chair ' || g, true
        FROM unnest(%(shop)s::int[]) AS s, generate_series(2, %(n)s) AS g
        """,
        {"shop": [s.shop_id for s in rows], "n": per_shop},
    )
    data.add_customers(conn, rows, per_shop, label="Reminded", settled=True)
    conn.close()
    return rows


def book(conn, shops: list[data.ShopRow], reminders: int, first_due: datetime, window_s: float):
    """The booked appointments: the i-th (taking shops in turn) is due its reminder at
    ``first_due + i * window_s / reminders``. Returns (appointment id, due unix time)."""
    return conn.execute(
        """
        INSERT INTO appointments
            (shop_id, resource_id, customer_id, service_id, starts_at, ends_at, status,
             created_at, manage_token)
        SELECT b.shop_id, b.resource_id, b.customer_id, b.service_id, b.due + b.hours,
               b.due + b.hours + interval '30 minutes', 'booked',
               now() - interval '2 days', gen_random_uuid()::text
        FROM (
            SELECT r.shop_id, r.resource_id, c.customer_id, s.service_id,
                   make_interval(hours => sh.reminder_hours) AS hours,
                   %(first)s::timestamptz + (row_number() OVER (ORDER BY r.k, r.shop_id) - 1)
                       * %(step)s * interval '1 second' AS due
            FROM unnest(%(shop)s::int[], %(service)s::int[]) AS s(shop_id, service_id)
            JOIN shops sh ON sh.id = s.shop_id
            JOIN (SELECT shop_id, id AS resource_id,
                         row_number() OVER (PARTITION BY shop_id ORDER BY id) AS k
                  FROM resources) AS r ON r.shop_id = s.shop_id
            JOIN (SELECT shop_id, id AS customer_id,
                         row_number() OVER (PARTITION BY shop_id ORDER BY id) AS k
                  FROM customers WHERE name LIKE 'Reminded %%') AS c
              ON c.shop_id = s.shop_id AND c.k = r.k
            ORDER BY r.k, r.shop_id
            LIMIT %(n)s
        ) AS b
        RETURNING id, extract(epoch FROM starts_at - (
            SELECT make_interval(hours => reminder_hours) FROM shops WHERE id = shop_id))
        """,
        {
            "shop": [s.shop_id for s in shops],
            "service": [s.service_id for s in shops],
            "first": first_due,
            "step": window_s / reminders,
            "n": reminders,
        },
    ).fetchall()


def _reminder_sids(conn, appointment_ids: list[int]) -> dict[int, str]:
    rows = conn.execute(
        "SELECT appointment_id, provider_sid FROM messages "
        "WHERE purpose = 'reminder' AND provider_sid IS NOT NULL "
        "AND appointment_id = ANY(%s)",
        (appointment_ids,),
    ).fetchall()
    return dict(rows)


def run(stack: Stack, app, reminders: int, shops: int, window_s: float = 60) -> dict:
    from jobs.dispatch import RQDispatcher
    from recovery.effects import Effect, EffectKind

    t_seed = time.time()
    rows = seed(app, reminders, shops)
    conn = data.connect()
    first_due = datetime.now(UTC) + timedelta(seconds=LEAD_S)
    booked = book(conn, rows, reminders, first_due, window_s)
    conn.execute("ANALYZE")
    seeded_s = time.time() - t_seed
    due = {appointment_id: float(at) for appointment_id, at in booked}
    t0 = time.time()
    RQDispatcher(app).dispatch(
        [
            Effect(EffectKind.SEND_REMINDER, (appointment_id,), at=datetime.fromtimestamp(at, UTC))
            for appointment_id, at in due.items()
        ]
    )
    scheduled_s = time.time() - t0
    start = first_due.timestamp()
    assert time.time() < start, "seeding and scheduling overran the lead time"

    def all_accepted() -> bool:
        sids = _reminder_sids(conn, list(due))
        accepted = stack.accepted()
        return len(sids) == len(due) and all(s in accepted for s in sids.values())

    wait_for(all_accepted, LEAD_S + window_s + 900, "every reminder SMS", poll=1)
    sids, accepted = _reminder_sids(conn, list(due)), stack.accepted()
    conn.close()
    at = {a: accepted[sid][1] for a, sid in sids.items()}
    lateness_ms = [(at[a] - due[a]) * 1000 for a in due]
    first, last = min(at.values()), max(at.values())
    return {
        "reminders": len(due),
        "shops": len(rows),
        "window_s": window_s,
        "seed_seconds": round(seeded_s, 1),
        "schedule_seconds": round(scheduled_s, 2),
        "all_accepted_s": round(last - start, 2),
        "first_accepted_s": round(first - start, 2),
        # The last reminder is due just before the window ends: how long after it.
        "all_accepted_after_last_due_s": round(last - max(due.values()), 2),
        "sms_per_second": round(len(at) / (last - first), 1) if last > first else None,
        "lateness_ms": summary(lateness_ms),
        "sender_rate": stack.extra_env.get("SMS_SENDER_RATE"),
    }
