"""An opening's story in time order: offers, messages in and out, the outcome.

Shared by ``flask recovery status`` and the admin panel's opening page.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from recovery.models import Appointment, Message, SlotOffer, SlotOpening


@dataclass(frozen=True)
class Entry:
    at: datetime
    kind: str  # opening | offer | message | booking | outcome
    text: str


def _about(offer: SlotOffer, opening: SlotOpening):
    """Messages of this offer: its own text, and the customer's texts while it was open
    (replies carry no offer id). An accepted offer's window runs through the payment hold."""
    end = offer.responded_at or offer.expires_at
    if offer.status == "accepted":
        end += timedelta(minutes=opening.shop.payment_hold_minutes)
    return or_(
        Message.slot_offer_id == offer.id,
        and_(
            Message.customer_id == offer.customer_id,
            Message.slot_offer_id.is_(None),
            Message.created_at.between(offer.sent_at, end + timedelta(minutes=1)),
        ),
    )


def opening_timeline(session: Session, opening_id: int) -> tuple[SlotOpening, list[Entry]]:
    opening = session.get(SlotOpening, opening_id)
    if opening is None:
        raise LookupError(f"no opening {opening_id}")
    entries = [
        Entry(
            opening.created_at,
            "opening",
            f"opened from cancelled booking #{opening.source_appointment_id}",
        )
    ]
    offers = session.scalars(
        select(SlotOffer).where(SlotOffer.slot_opening_id == opening.id).order_by(SlotOffer.id)
    ).all()
    for offer in offers:
        who = f"{offer.customer.name} ({offer.customer.phone})"
        entries.append(
            Entry(
                offer.sent_at,
                "offer",
                f"offer #{offer.id} to {who}, expires {offer.expires_at:%H:%M:%S} "
                f"UTC: {offer.status}",
            )
        )
        if offer.responded_at:
            entries.append(Entry(offer.responded_at, "offer", f"offer #{offer.id} {offer.status}"))
    if offers:
        messages = session.scalars(
            select(Message)
            .where(or_(*(_about(offer, opening) for offer in offers)))
            .order_by(Message.created_at, Message.id)
        ).all()
        for m in messages:
            arrow = "<-" if m.direction == "inbound" else "->"
            entries.append(
                Entry(
                    m.created_at,
                    "message",
                    f"{arrow} {m.to_number if arrow == '->' else m.from_number} "
                    f"[{m.purpose}, {m.status}] {m.body}",
                )
            )
    for appt in session.scalars(
        select(Appointment).where(Appointment.source_slot_opening_id == opening.id)
    ):
        entries.append(
            Entry(
                appt.created_at,
                "booking",
                f"booking #{appt.id} for {appt.customer.name}: {appt.status}",
            )
        )
    end = opening.filled_at or opening.expired_at
    if end:
        note = f" ({opening.outcome_note})" if opening.outcome_note else ""
        entries.append(Entry(end, "outcome", f"opening {opening.status}{note}"))
    entries.sort(key=lambda e: e.at)
    return opening, entries
