"""Staff actions that are compositions of domain transitions (no rules of their own).

The loop's ``expire_offer`` only expires an offer that is due (it is what the exact-time
job calls, and an early run must not cut an offer short). A staff "expire now" shortens
the offer's deadline to now under the opening's row lock, then lets the domain's own
transition expire it and offer the next customer. The scheduled expiry job finds it
already expired later and does nothing.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from recovery.loop import expire_offer, live_offer, lock_opening, offer_next
from recovery.models import OfferStatus, SlotOffer


def expire_offer_now(session: Session, offer_id: int, now: datetime) -> str:
    offer = session.get(SlotOffer, offer_id)
    if offer is None:
        return "no such offer"
    lock_opening(session, offer.slot_opening_id)
    session.refresh(offer)
    if offer.status != OfferStatus.SENT:
        return f"offer already {offer.status}"
    if offer.expires_at > now:
        offer.expires_at = now
        session.flush()
    return expire_offer(session, offer.id, now)


def retrigger(session: Session, opening_id: int, now: datetime) -> str:
    """Offer the opening to the next customer now, cutting short any live offer."""
    offer = live_offer(session, opening_id)
    if offer is not None:
        return expire_offer_now(session, offer.id, now)
    return str(offer_next(session, opening_id, now))
