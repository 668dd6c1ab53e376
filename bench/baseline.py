"""BASE: the product documents' original design, measured on the same kind of data as B4.

The design: a cron every 5 minutes expires at most 25 due offers per run and, for each,
offers the slot to the next customer and sends that SMS synchronously inside the run.
``cron_run`` is one such run against the bench database, built from the app's own
domain functions: ``offering.expire_offer`` (which offers the next customer and queues
the text) and ``outbox.deliver`` through ``TwilioSender`` to the fake Twilio, committing
per offer. The cron carries its work out itself, so the jobs the domain asks for (send
the text, expire the new offer at its time) are dropped before each commit.

Measured: the work time of real runs on real due offers (``runs`` runs of 25, in shops of
20 openings with 40 customers waiting, made by the same functions as B4's data): each
run's time, and each offer's own work (expire, offer the next customer, send, commit).
Computed from the schedule plus that measured work (never observed end to end):

* B4 (10,000 due at once): ``ceil(10,000 / 25)`` runs 300 s apart, plus the work of the
  last run;
* B2 (one offer's expiry to the next customer's SMS): the wait for the next cron run,
  uniform over 0-300 s (p50 150 s, p99 297 s), plus the measured per-offer work p50/p99.
  This holds only while at most 25 offers fall due per 5 minutes; more wait whole runs.
"""

from __future__ import annotations

import math
import time
from datetime import datetime

from sqlalchemy import select

from bench import data
from bench.fake_provider import ACCOUNT_SID, AUTH_TOKEN
from bench.stack import RESULTS, Stack
from bench.stats import percentile, summary

BATCH = 25  # offers per cron run
INTERVAL_S = 300  # a cron every 5 minutes


def cron_run(session, sender, now: datetime) -> list[dict]:
    """One run of the original cron: at most 25 due offers, each expired, re-offered and
    its next text sent synchronously, committed one by one. Returns each offer's work."""
    from recovery.effects import take_pending
    from recovery.messaging import outbox
    from recovery.models import Message, MessageStatus, OfferStatus, SlotOffer
    from recovery.offers.offering import expire_offer

    due = session.scalars(
        select(SlotOffer.id)
        .where(SlotOffer.status == OfferStatus.SENT, SlotOffer.expires_at <= now)
        .order_by(SlotOffer.expires_at, SlotOffer.id)
        .limit(BATCH)
    ).all()
    session.commit()
    done = []
    for offer_id in due:
        t0 = time.perf_counter()
        outcome = expire_offer(session, offer_id, now)
        opening_id = session.get(SlotOffer, offer_id).slot_opening_id
        queued = session.scalars(
            select(Message.id)
            .join(SlotOffer, Message.slot_offer_id == SlotOffer.id)
            .where(
                SlotOffer.slot_opening_id == opening_id,
                Message.purpose == outbox.Purpose.OFFER,
                Message.status == MessageStatus.QUEUED,
            )
        ).all()
        deliveries = [outbox.deliver(session, m, sender, now) for m in queued]
        take_pending(session)  # no jobs: the cron itself sends and comes back for expiries
        session.commit()
        done.append(
            {
                "offer": offer_id,
                "outcome": outcome,
                "sent": sum(d in outbox.ACCEPTED for d in deliveries),
                "work_ms": (time.perf_counter() - t0) * 1000,
                "done_at": time.time(),
            }
        )
    return done


def seed(app, offers: int) -> list[int]:
    """``offers`` due offers in shops of 20 openings with 40 customers waiting (B4's shape,
    made by the same functions). Returns the shops."""
    conn = data.connect()
    shops = data.seed_due_offers(app, conn, offers)
    conn.close()
    return [s.shop_id for s in shops]


def run(app, runs: int, b4_offers: int) -> dict:
    """``runs`` real cron runs of 25 on due offers, against a fake Twilio of its own."""
    from recovery.db import db, utcnow
    from recovery.messaging.gateway import TwilioSender

    seed(app, runs * BATCH)
    provider = Stack(logdir=RESULTS / "logs" / "baseline")
    provider.start_fake_twilio()
    try:
        sender = TwilioSender(ACCOUNT_SID, AUTH_TOKEN, api_base_url=provider.twilio_url)
        measured = []
        with app.app_context():
            for _ in range(runs):
                t0 = time.time()
                offers = cron_run(db.session, sender, utcnow())
                run_s = time.time() - t0
                measured.append(
                    {
                        "offers": len(offers),
                        "sms_sent": sum(o["sent"] for o in offers),
                        "work_s": round(run_s, 3),
                        "per_offer_ms": [round(o["work_ms"], 2) for o in offers],
                        # From the run's start to each offer's text sent and committed.
                        "offer_done_ms": [round((o["done_at"] - t0) * 1000, 1) for o in offers],
                    }
                )
            db.session.remove()
        accepted = len(provider.accepted())
    finally:
        provider.stop()
    per_offer = [ms for r in measured for ms in r["per_offer_ms"]]
    work = summary(per_offer)
    last_run_s = measured[-1]["work_s"]
    cron_runs = math.ceil(b4_offers / BATCH)
    wait_p50, wait_p99 = INTERVAL_S * 0.50, INTERVAL_S * 0.99
    return {
        "batch": BATCH,
        "interval_s": INTERVAL_S,
        "runs": measured,
        "sms_accepted": accepted,
        "per_offer_work_ms": work,
        "offer_done_in_run_ms": summary([ms for r in measured for ms in r["offer_done_ms"]]),
        "run_work_s": {
            "p50": percentile([r["work_s"] for r in measured], 50),
            "max": max(r["work_s"] for r in measured),
        },
        "computed": {
            "b4_offers": b4_offers,
            "b4_cron_runs": cron_runs,
            "b4_all_next_sms_s": cron_runs * INTERVAL_S + last_run_s,
            "b2_p50_ms": wait_p50 * 1000 + work["p50"],
            "b2_p99_ms": wait_p99 * 1000 + work["p99"],
        },
    }
