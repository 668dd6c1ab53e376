"""A YES: the first one on a live offer wins a booking; everyone else learns why not.

The winner's booking is ``pending_payment`` with a payment request when the service asks
for a deposit (its hold is released at ``payment_due_at`` unless paid), or ``booked`` at
once when it asks for nothing.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, update
from sqlalchemy.orm import Session

from recovery import effects
from recovery.availability.blocks import blocking
from recovery.availability.overlap import SlotTaken, ensure_free
from recovery.db import try_insert, utcnow
from recovery.effects import EffectKind
from recovery.links import pay_url
from recovery.messaging import texts
from recovery.messaging.reminders import schedule_reminder
from recovery.models import (
    Appointment,
    AppointmentStatus,
    OfferStatus,
    OpeningStatus,
    Payment,
    SlotOffer,
    SlotOpening,
)
from recovery.offers.locks import lock_opening, reload
from recovery.offers.offering import BLOCKED_NOTE, expire_offer
from recovery.offers.openings import held_booking, mark_expired
from recovery.payments.requests import mark_settled, request_payment

log = logging.getLogger(__name__)


class AcceptOutcome(enum.StrEnum):
    WON = "won"
    ALREADY_YOURS = "already yours"
    EXPIRED = "expired"
    TAKEN = "taken"
    NO_OFFER = "no offer"


@dataclass(frozen=True)
class Acceptance:
    outcome: AcceptOutcome
    appointment: Appointment | None = None
    payment: Payment | None = None
    confirmation: str = ""  # what the winner is told to do next (the webhook's answer)


# The winning moves, as plain UPDATEs built once: an ORM-enabled UPDATE built for each
# call cost four times the CPU (it also evaluates its criteria against the session's
# objects; ``accept_offer`` expires the columns instead).
_offers = SlotOffer.__table__
_openings = SlotOpening.__table__
_WIN_OFFER = (
    update(_offers)
    .where(
        _offers.c.id == bindparam("offer_id"),
        _offers.c.status == OfferStatus.SENT.value,
        _offers.c.expires_at > bindparam("now"),
    )
    .values(status=OfferStatus.ACCEPTED.value, responded_at=bindparam("now"))
)
_WIN_OFFER_COLUMNS = ["status", "responded_at"]
_FILL_OPENING = (
    update(_openings)
    .where(
        _openings.c.id == bindparam("opening_id"), _openings.c.status == OpeningStatus.OPEN.value
    )
    .values(status=OpeningStatus.FILLED.value, filled_at=bindparam("now"), outcome_note=None)
)
_FILL_OPENING_COLUMNS = ["status", "filled_at", "outcome_note"]


def accept_offer(session: Session, offer_id: int, now: datetime | None = None) -> Acceptance:
    """A YES: the first one on a live offer wins a booking; everyone else learns why not."""
    now = now or utcnow()
    offer = session.get(SlotOffer, offer_id)
    if offer is None:
        return Acceptance(AcceptOutcome.NO_OFFER)
    opening = lock_opening(session, offer.slot_opening_id)
    offer = reload(session, SlotOffer, offer_id)
    if offer.status == OfferStatus.ACCEPTED:
        return Acceptance(AcceptOutcome.ALREADY_YOURS, held_booking(session, opening.id))
    if opening.status == OpeningStatus.EXPIRED and opening.outcome_note == BLOCKED_NOTE:
        # Withdrawn for a block: the slot is gone, not passed on to someone else.
        return Acceptance(AcceptOutcome.TAKEN)
    if offer.status == OfferStatus.SENT and offer.expires_at <= now:
        # Due, and the expiry job has not run yet. It may find the time to answer runs
        # longer (it starts when the text was accepted), and leave the offer live.
        expire_offer(session, offer.id, now)
    if offer.status == OfferStatus.EXPIRED:
        return Acceptance(AcceptOutcome.EXPIRED)
    if offer.status != OfferStatus.SENT or opening.status != OpeningStatus.OPEN:
        if opening.status == OpeningStatus.OPEN:  # they said NO, or their hold was released
            return Acceptance(AcceptOutcome.NO_OFFER)
        return Acceptance(AcceptOutcome.TAKEN)
    # Checked under the opening's row lock: a block saved before this point is seen here,
    # and one being saved now waits for this lock (``availability.blocks``) and then
    # finds this booking among the ones it covers.
    if blocking(session, opening.shop_id, opening.resource_id, opening.starts_at, opening.ends_at):
        offer.status = OfferStatus.EXPIRED
        mark_expired(opening, BLOCKED_NOTE, now)
        session.flush()
        return Acceptance(AcceptOutcome.TAKEN)

    # The guard that holds without Redis and without the row lock: only one transaction
    # can move this offer from sent and this opening from open.
    won_offer = session.execute(_WIN_OFFER, {"offer_id": offer.id, "now": now}).rowcount
    won_opening = (
        won_offer
        and session.execute(_FILL_OPENING, {"opening_id": opening.id, "now": now}).rowcount
    )
    if not (won_offer and won_opening):
        # Never expected: the opening's row lock is held. An invariant breach, not a refusal.
        raise RuntimeError(f"offer {offer.id} or opening {opening.id} moved under a held lock")
    # The statements went around the ORM: the session forgets its copies of those
    # columns, so anyone reading them in this transaction reads the new values.
    session.expire(offer, _WIN_OFFER_COLUMNS)
    session.expire(opening, _FILL_OPENING_COLUMNS)

    appointment = _book(session, opening, offer, now)
    if appointment is None:
        offer.status = OfferStatus.EXPIRED
        mark_expired(opening, "the time was booked another way", now)
        session.flush()
        return Acceptance(AcceptOutcome.TAKEN)

    shop = opening.shop
    customer = offer.customer
    payment = request_payment(session, appointment, now)
    if payment is None:  # the policy asks for nothing: booked at once
        appointment.status = AppointmentStatus.BOOKED
        mark_settled(customer, appointment)
        schedule_reminder(session, appointment, now)
        body = texts.accepted_booked(shop, appointment.starts_at, now)
    else:
        effects.request(
            session, EffectKind.RELEASE_HOLD, appointment.id, at=appointment.payment_due_at
        )
        body = texts.accepted_pay(
            shop, payment.amount_minor, shop.payment_hold_minutes, pay_url(payment)
        )
    session.flush()
    log.info(
        "opening %s won by customer %s (appointment %s)", opening.id, customer.id, appointment.id
    )
    return Acceptance(AcceptOutcome.WON, appointment, payment, confirmation=body)


def _book(session: Session, opening: SlotOpening, offer: SlotOffer, now: datetime):
    """The winner's booking; None if the time is taken (checked in code for SQLite, and
    by the exclusion constraint on PostgreSQL, which also settles races)."""
    try:
        ensure_free(session, opening.resource_id, opening.starts_at, opening.ends_at)
    except SlotTaken:
        return None
    return try_insert(
        session,
        Appointment(
            shop_id=opening.shop_id,
            resource_id=opening.resource_id,
            customer_id=offer.customer_id,
            service_id=opening.service_id,
            starts_at=opening.starts_at,
            ends_at=opening.ends_at,
            status=AppointmentStatus.PENDING_PAYMENT,
            source_slot_opening_id=opening.id,
            created_at=now,
        ),
    )
