"""Benchmark data, made in bulk with SQL (generate_series), never one ORM row at a time.

Shops, their resources and services are few and made with the ORM (so every column gets
the model's default); customers, bookings, openings and offers are made by set-based
INSERT ... SELECT statements.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time

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
    overall expires at ``first_expiry + n * spacing_s``."""
    conn.execute(
        """
        INSERT INTO slot_offers
            (slot_opening_id, customer_id, phone, sender_number, channel, status, sent_at,
             expires_at)
        SELECT o.id, c.id, c.phone, (SELECT sms_from_number FROM shops WHERE id = o.shop_id),
               'sms', 'sent', %(sent)s,
               %(first)s::timestamptz
                 + (row_number() OVER (ORDER BY o.id) - 1) * %(spacing)s * interval '1 second'
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
