"""The periodic sweep: the safety net behind exact-time jobs, and the repair after a crash.

Each batch is one transaction the caller commits. Openings are taken with ``FOR UPDATE
SKIP LOCKED``, so several workers sweeping at once split the work instead of repeating it,
and every step is the same idempotent transition the exact-time jobs use.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from recovery import effects
from recovery.effects import Kind
from recovery.loop import expire_offer, offer_next, release_hold
from recovery.models import (
    Appointment,
    AppointmentStatus,
    Message,
    MessageStatus,
    OfferStatus,
    OpeningStatus,
    SlotOffer,
    SlotOpening,
)

STALE_MESSAGE_AFTER = timedelta(seconds=30)  # a send job should have taken it by now
GIVE_UP_MESSAGE_AFTER = timedelta(hours=6)  # an offer text this late is worse than none


@dataclass
class SweepReport:
    expired_offers: int = 0
    restarted_openings: int = 0
    released_holds: int = 0
    requeued_messages: int = 0

    @property
    def transitions(self) -> int:
        return self.expired_offers + self.restarted_openings + self.released_holds


def sweep_batch(
    session: Session, now: datetime, limit: int = 200, requeue_messages: bool = True
) -> SweepReport:
    """One batch of each kind of due work. Queued messages are only re-requested (they stay
    queued until sent), so a caller looping over batches asks for them once."""
    report = SweepReport()

    due_offers = session.scalars(
        select(SlotOffer.id)
        .join(SlotOpening, SlotOpening.id == SlotOffer.slot_opening_id)
        .where(SlotOffer.status == OfferStatus.SENT, SlotOffer.expires_at <= now)
        .order_by(SlotOffer.expires_at)
        .limit(limit)
        .with_for_update(of=SlotOpening, skip_locked=True)
    ).all()
    for offer_id in due_offers:
        expire_offer(session, offer_id, now)
    report.expired_offers = len(due_offers)

    # Open with nobody offered and nobody holding it: an offer_next job was lost.
    idle_openings = session.scalars(
        select(SlotOpening.id)
        .where(
            SlotOpening.status == OpeningStatus.OPEN,
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
    for opening_id in idle_openings:
        offer_next(session, opening_id, now)
    report.restarted_openings = len(idle_openings)

    overdue_holds = session.scalars(
        select(Appointment.id)
        .where(
            Appointment.status == AppointmentStatus.PENDING_PAYMENT,
            Appointment.payment_due_at <= now,
        )
        .order_by(Appointment.payment_due_at)
        .limit(limit)
    ).all()
    for appointment_id in overdue_holds:
        release_hold(session, appointment_id, now=now)
    report.released_holds = len(overdue_holds)

    if not requeue_messages:
        return report
    stale_messages = session.scalars(
        select(Message.id)
        .where(
            Message.status == MessageStatus.QUEUED,
            Message.created_at <= now - STALE_MESSAGE_AFTER,
            Message.created_at > now - GIVE_UP_MESSAGE_AFTER,
        )
        .order_by(Message.id)
        .limit(limit)
    ).all()
    for message_id in stale_messages:
        effects.request(session, Kind.SEND_MESSAGE, message_id)
    report.requeued_messages = len(stale_messages)
    return report
