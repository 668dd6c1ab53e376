"""B4: 10,000 offers due at once across 10,000 openings, processed end to end.

The offers are seeded already due (their exact-time jobs lost, as after an outage), spread
over 500 shops of 20 openings with 40 customers waiting in each. The clock starts when the
sweep job is put on the queue (what rqscheduler does every minute) and stops when the last
of the 10,000 next-offer SMS is accepted by the fake provider.
"""

from __future__ import annotations

import time

from redis import Redis
from rq import Queue

from bench import data
from bench.profile_webhook import cpu_snapshot, ms_per_request
from bench.stack import REDIS_URL, Stack, wait_for


def run(stack: Stack, app, offers: int) -> dict:
    conn = data.connect()
    shops = data.seed_due_offers(app, conn, offers)
    shop_ids = [s.shop_id for s in shops]
    total = conn.execute(
        "SELECT count(*) FROM slot_offers o JOIN slot_openings s ON s.id = o.slot_opening_id "
        "WHERE s.shop_id = ANY(%s) AND o.status = 'sent'",
        (shop_ids,),
    ).fetchone()[0]
    before = len(stack.accepted())

    cpu_before = cpu_snapshot(stack)
    t0 = time.time()
    Queue("default", connection=Redis.from_url(REDIS_URL)).enqueue(
        "jobs.tasks.sweep", job_timeout=50
    )

    def due_left() -> int:
        return conn.execute(
            "SELECT count(*) FROM slot_offers o JOIN slot_openings s ON s.id = o.slot_opening_id "
            "WHERE s.shop_id = ANY(%s) AND o.status = 'sent' AND o.expires_at <= now()",
            (shop_ids,),
        ).fetchone()[0]

    wait_for(lambda: due_left() == 0, 600, "the sweep to expire every due offer", poll=0.2)
    swept = time.time() - t0
    wait_for(lambda: len(stack.accepted()) - before >= total, 900, "every next offer SMS", 0.5)
    accepted = sorted(at for _, at in list(stack.accepted().values())[before:])
    sent_all = accepted[-1] - t0
    # Each role's CPU over the whole catch-up, per offer (the machine has two cores).
    cpu = ms_per_request(cpu_before, cpu_snapshot(stack), total)
    conn.close()
    return {
        "offers": total,
        "shops": len(shops),
        "expired_all_s": round(swept, 2),
        "all_next_sms_accepted_s": round(sent_all, 2),
        "sms_per_second": round(total / (accepted[-1] - accepted[0]), 1) if total > 1 else None,
        "first_sms_s": round(accepted[0] - t0, 2),
        "cpu_ms_per_offer": cpu,
    }
