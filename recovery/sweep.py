"""The periodic sweep: the safety net behind exact-time jobs, and the repair after a crash.

Each batch is one transaction the caller commits. Openings are taken with ``FOR UPDATE
SKIP LOCKED``, so several workers sweeping at once split the work instead of repeating it,
and every step is the same idempotent transition the exact-time jobs use.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import exists, or_, select
from sqlalchemy.orm import Session

from recovery import effects
from recovery.booking.holds import release_hold
from recovery.effects import EffectKind
from recovery.messaging.outbox import GIVE_UP_AFTER
from recovery.messaging.quiet_hours import quiet_until
from recovery.messaging.reminders import due_reminders, send_reminder
from recovery.models import (
    Appointment,
    AppointmentStatus,
    Message,
    MessageStatus,
    OfferStatus,
    OpeningStatus,
    Payment,
    PaymentStatus,
    Refund,
    RefundStatus,
    Shop,
    SlotOffer,
    SlotOpening,
)
from recovery.offers.offering import expire_due_offers, offer_next_many
from recovery.payments.gateway import SANDBOX

log = logging.getLogger(__name__)

STALE_MESSAGE_AFTER = timedelta(seconds=30)  # a send job should have taken it by now
GIVE_UP_MESSAGE_AFTER = GIVE_UP_AFTER  # an offer text this late is worse than none
STALE_PAYMENT_WORK_AFTER = timedelta(minutes=1)  # its job has had time to run (or retry)


@dataclass
class SweepReport:
    expired_offers: int = 0
    restarted_openings: int = 0
    released_holds: int = 0
    requeued_messages: int = 0
    requeued_payment_work: int = 0
    deferred_holds: int = 0  # overdue holds handed to the release job (gateway check)
    sent_reminders: int = 0  # due reminders whose exact-time job was lost or late

    @property
    def transitions(self) -> int:
        return (
            self.expired_offers
            + self.restarted_openings
            + self.released_holds
            + self.sent_reminders
        )


def sweep_batch(
    session: Session, now: datetime, limit: int = 200, requeue_messages: bool = True
) -> SweepReport:
    """One batch of each kind of due work. Queued messages are only re-requested (they stay
    queued until sent), so a caller looping over batches asks for them once."""
    report = SweepReport()

    # Offers whose time to answer is over, expired and their openings offered on, in a
    # fixed number of statements per batch plus one per opening.
    report.expired_offers = expire_due_offers(session, now, limit)

    # Open with nobody offered and nobody holding it: an offer_next job was lost. Shops
    # in quiet hours are left out: their openings wait for the job at the quiet end (and
    # the sweep after it), so the sweep does not pick the same waiting openings each time.
    idle_openings = session.scalars(
        select(SlotOpening.id)
        .where(
            SlotOpening.status == OpeningStatus.OPEN,
            SlotOpening.shop_id.not_in(_quiet_shops_with_openings(session, now)),
            ~exists().where(
                SlotOffer.slot_opening_id == SlotOpening.id, SlotOffer.status == OfferStatus.SENT
            ),
            ~exists().where(
                Appointment.source_slot_opening_id == SlotOpening.id,
                Appointment.status.in_(
                    (AppointmentStatus.PENDING_PAYMENT, AppointmentStatus.BOOKED)
                ),
            ),
        )
        .order_by(SlotOpening.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    offer_next_many(session, idle_openings, now)
    report.restarted_openings = len(idle_openings)

    # Holds past their deadline. One whose payment has a gateway intent goes to the
    # release job, which asks the gateway first (no network calls inside the sweep).
    overdue_holds = session.execute(
        select(Appointment.id, Payment.provider_ref)
        .outerjoin(
            Payment,
            (Payment.appointment_id == Appointment.id)
            & (Payment.status == PaymentStatus.PENDING)
            & (Payment.provider != SANDBOX),
        )
        .where(
            Appointment.status == AppointmentStatus.PENDING_PAYMENT,
            Appointment.payment_due_at <= now,
        )
        .order_by(Appointment.payment_due_at)
        .limit(limit)
    ).all()
    for appointment_id, provider_ref in overdue_holds:
        if provider_ref is None:
            release_hold(session, appointment_id, now=now)
            report.released_holds += 1
        else:
            effects.request(session, EffectKind.RELEASE_HOLD, appointment_id)
            report.deferred_holds += 1

    # Reminders due but not sent (the worker was down, or the job was lost): the same
    # job work, so the Reminder row's unique key keeps it to one text if both run.
    for appointment_id in due_reminders(session, now, limit):
        if send_reminder(session, appointment_id, now) == "sent":
            report.sent_reminders += 1

    if not requeue_messages:
        return report
    # Queued texts whose job was lost, and texts left `sending` by an attempt that timed
    # out or died: the send job looks those up at the provider before sending again, so
    # they are asked for, never re-queued.
    stale_messages = session.scalars(
        select(Message.id)
        .where(
            or_(
                (Message.status == MessageStatus.QUEUED)
                & (Message.created_at <= now - STALE_MESSAGE_AFTER),
                (Message.status == MessageStatus.SENDING)
                & (Message.sending_at <= now - STALE_MESSAGE_AFTER),
            ),
            Message.created_at > now - GIVE_UP_MESSAGE_AFTER,
        )
        .order_by(Message.id)
        .limit(limit)
    ).all()
    for message_id in stale_messages:
        effects.request(session, EffectKind.SEND_MESSAGE, message_id)
    report.requeued_messages = len(stale_messages)
    report.requeued_payment_work = _requeue_payment_work(session, now, limit)
    return report


def _quiet_shops_with_openings(session: Session, now: datetime) -> list[int]:
    shops = session.scalars(
        select(Shop).where(
            Shop.id.in_(select(SlotOpening.shop_id).where(SlotOpening.status == OpeningStatus.OPEN))
        )
    ).all()
    return [shop.id for shop in shops if quiet_until(shop, now) is not None]


def _requeue_payment_work(session: Session, now: datetime, limit: int) -> int:
    """Gateway calls owed after a commit whose job was lost: refunds not yet made, and
    released payments whose intent is still open at the gateway."""
    before = now - STALE_PAYMENT_WORK_AFTER
    refunds = session.scalars(
        select(Refund.id)
        .where(Refund.status == RefundStatus.PENDING, Refund.created_at <= before)
        .order_by(Refund.id)
        .limit(limit)
    ).all()
    for refund_id in refunds:
        effects.request(session, EffectKind.REFUND, refund_id)
    unclosed = session.scalars(
        select(Payment.id)
        .where(
            Payment.status.in_((PaymentStatus.CANCELED, PaymentStatus.FAILED)),
            Payment.provider_ref.is_not(None),
            Payment.provider_closed_at.is_(None),
            Payment.updated_at <= before,
        )
        .order_by(Payment.id)
        .limit(limit)
    ).all()
    for payment_id in unclosed:
        effects.request(session, EffectKind.CANCEL_PAYMENT, payment_id)
    return len(refunds) + len(unclosed)


BATCH = 200
MAX_BATCHES = 50


def sweep(session: Session, now_fn, batch: int = BATCH, max_batches: int = MAX_BATCHES) -> dict:
    """Catch up with everything due, committing one transaction per batch (the sweep owns
    its units of work, so one long catch-up never holds every lock at once). ``now_fn``
    is read per batch, so a long catch-up sees time move. When the first batch finds more
    due offers than it takes (the catch-up after an outage), another worker is asked to
    expire them alongside (``catch_up_offers``): the batches skip each other's locks."""
    totals: dict[str, int] = {}
    for n in range(max_batches):
        report = sweep_batch(session, now_fn(), batch, requeue_messages=n == 0)
        if n == 0 and report.expired_offers == batch:
            effects.request(session, EffectKind.CATCH_UP_OFFERS)
        session.commit()
        for key, value in vars(report).items():
            totals[key] = totals.get(key, 0) + value
        if report.transitions < batch:
            break
    if any(totals.values()):
        log.info("sweep: %s", totals)
    return totals


def catch_up_offers(
    session: Session, now_fn, batch: int = BATCH, max_batches: int = MAX_BATCHES
) -> int:
    """Only the due offers, batch after batch (one transaction each), alongside a sweep."""
    total = 0
    for _ in range(max_batches):
        done = expire_due_offers(session, now_fn(), batch)
        session.commit()
        total += done
        if done < batch:
            break
    return total
