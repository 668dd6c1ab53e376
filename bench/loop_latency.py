"""B1 (cancel -> first offer SMS accepted) and B2 (offer expires -> next SMS accepted).

Both are latencies through the real processes: the commit enqueues RQ jobs, an RQ worker
runs ``offer_next`` and then ``send_message``, whose Twilio SDK call is accepted by the
fake provider, which logs the moment. Samples are spaced out so each one measures the
loop's latency, not a queue built up by the benchmark itself.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from bench import data
from bench.stack import Stack, wait_for
from bench.stats import summary
from recovery.booking import cancellation

# Spread over enough shops that no sender number goes past its default rate (one text a
# second: at 5 a second in all, each number sends one every 5 s), so the figures are the
# loop's latency, not a number's queue.
SHOPS = 25


def _offer_sms(app, opening_ids: list[int], first: bool) -> dict[int, str]:
    """opening id -> provider sid of its first (or second) offer's SMS."""
    from recovery.db import db

    with app.app_context():
        rows = db.session.execute(
            text(
                """
                SELECT o.slot_opening_id, m.provider_sid,
                       row_number() OVER (PARTITION BY o.slot_opening_id ORDER BY o.id) AS nth
                FROM slot_offers o JOIN messages m ON m.slot_offer_id = o.id
                WHERE o.slot_opening_id = ANY(:ids) AND m.purpose = 'offer'
                """
            ),
            {"ids": opening_ids},
        ).all()
        db.session.remove()
    wanted = 1 if first else 2
    return {r[0]: r[1] for r in rows if r[2] == wanted and r[1]}


def b1_cancel_to_offer(stack: Stack, app, samples: int, gap_s: float) -> dict:

    from recovery.db import db

    conn = data.connect()
    shops = data.make_shops(app, conn, count=SHOPS, resources=4)
    data.add_customers(conn, shops, per_shop=samples + 50, label=data.SPARE, settled=True)
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=3)
    data.add_owner_bookings(conn, shops, -(-samples // len(shops)), "booked", start)
    bookings = [
        r[0]
        for r in conn.execute(
            # Shops in turn, so that each shop's cancellations are SHOPS apart.
            "SELECT id FROM appointments WHERE customer_id = ANY(%s) AND status = 'booked' "
            "ORDER BY row_number() OVER (PARTITION BY shop_id ORDER BY id), shop_id",
            ([s.owner_id for s in shops],),
        )
    ][:samples]
    conn.execute("ANALYZE")

    cancelled_at: dict[int, float] = {}  # opening id -> when staff pressed cancel
    for appointment_id in bookings:
        t0 = time.time()
        with app.app_context():
            result = cancellation.cancel_appointment(db.session, appointment_id, reason="bench")
            db.session.commit()  # the offer_next job is enqueued after this commit
            cancelled_at[result.opening.id] = t0
            db.session.remove()
        time.sleep(gap_s)

    def all_sent():
        sids = _offer_sms(app, list(cancelled_at), first=True)
        accepted = stack.accepted()
        return len(sids) == len(cancelled_at) and all(s in accepted for s in sids.values())

    wait_for(all_sent, 120, "every first offer SMS", poll=0.5)
    sids, accepted = _offer_sms(app, list(cancelled_at), first=True), stack.accepted()
    latencies = [accepted[sids[o]][1] - t0 for o, t0 in cancelled_at.items()]
    conn.close()
    return summary([x * 1000 for x in latencies])


def b2_expiry_to_next_offer(stack: Stack, app, samples: int, gap_s: float) -> dict:
    """Offers are seeded to expire one every ``gap_s``; each one's exact-time job is
    scheduled through rq-scheduler exactly as ``offer_next`` schedules it."""
    from jobs.dispatch import RQDispatcher
    from recovery.effects import Effect, EffectKind

    conn = data.connect()
    shops = data.make_shops(app, conn, count=SHOPS, resources=4)
    per_shop = -(-samples // len(shops))
    data.add_customers(conn, shops, per_shop=per_shop, label=data.OFFERED, settled=False)
    data.add_customers(conn, shops, per_shop=per_shop + 20, label=data.SPARE, settled=True)
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=3)
    data.add_owner_bookings(conn, shops, per_shop, "cancelled", start)
    data.open_cancelled(conn, shops)
    first_expiry = datetime.now(UTC) + timedelta(seconds=5)
    data.offer_openings(
        conn, shops, sent_at=datetime.now(UTC), first_expiry=first_expiry, spacing_s=gap_s
    )
    conn.execute("ANALYZE")
    offers = conn.execute(
        "SELECT o.id, o.slot_opening_id, o.expires_at FROM slot_offers o "
        "JOIN slot_openings s ON s.id = o.slot_opening_id WHERE s.shop_id = ANY(%s) "
        "ORDER BY o.expires_at LIMIT %s",
        ([s.shop_id for s in shops], samples),
    ).fetchall()
    RQDispatcher(app).dispatch([Effect(EffectKind.EXPIRE_OFFER, (o[0],), at=o[2]) for o in offers])
    due = {o[1]: o[2].timestamp() for o in offers}  # opening id -> when its offer expired

    def all_sent():
        sids = _offer_sms(app, list(due), first=True)  # the first SMS is the next offer's
        accepted = stack.accepted()
        return len(sids) == len(due) and all(s in accepted for s in sids.values())

    wait_for(all_sent, 60 + samples * gap_s * 2, "every next offer SMS", poll=0.5)
    sids, accepted = _offer_sms(app, list(due), first=True), stack.accepted()
    latencies = [accepted[sids[o]][1] - t for o, t in due.items()]
    conn.close()
    return summary([x * 1000 for x in latencies])
