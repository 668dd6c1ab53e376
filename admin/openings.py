"""Slot openings and their offers: what recovery is doing, and the staff's levers on it."""

from __future__ import annotations

from flask import flash, request
from flask_admin import expose
from flask_admin.actions import action
from flask_login import current_user
from sqlalchemy import func, select

from admin import display
from admin.base import ShopModelView
from admin.filters import local_date_filters, status_filter
from recovery import audit
from recovery.audit import AuditAction
from recovery.db import db, utcnow
from recovery.models import (
    Appointment,
    AppointmentStatus,
    OfferStatus,
    OpeningStatus,
    SlotOffer,
    SlotOpening,
)
from recovery.offers.locks import lock_opening, reload
from recovery.offers.offering import expire_offer_now, retrigger
from recovery.offers.openings import expire_opening, live_offer
from recovery.offers.timeline import Entry, opening_timeline

RECOVERED_STATUSES = (
    AppointmentStatus.PENDING_PAYMENT,
    AppointmentStatus.BOOKED,
    AppointmentStatus.COMPLETED,
)


def recovered_booking(opening: SlotOpening) -> Appointment | None:
    """The booking a YES made from this opening (the latest that still stands)."""
    return db.session.scalar(
        select(Appointment)
        .where(
            Appointment.source_slot_opening_id == opening.id,
            Appointment.status.in_(RECOVERED_STATUSES),
        )
        .order_by(Appointment.id.desc())
    )


def opening_state(opening: SlotOpening) -> dict:
    """What steering an opening changes: its status and who holds its live offer."""
    offer = live_offer(db.session, opening.id)
    return {
        **audit.snapshot(opening, ["status"]),
        "live_offer_id": offer.id if offer is not None else None,
    }


def locked_opening_state(opening: SlotOpening) -> dict:
    """Read under the opening's lock (every transition on it takes that lock first), so
    what the loop did a moment before is not reported as the staff's change."""
    return opening_state(lock_opening(db.session, opening.id))


def _booking_link(view, context, model, name):
    booking = recovered_booking(model)
    if booking is None:
        return ""
    label = f"#{booking.id} {booking.customer.name}"
    return (
        display.details_link("appointments", booking.id, label)
        + " "
        + display.badge(booking.status)
    )


def _offers_sent(view, context, model, name):
    return db.session.scalar(
        select(func.count(SlotOffer.id)).where(SlotOffer.slot_opening_id == model.id)
    )


def _status(view, context, model, name):
    return display.badge(model.status)


def _local(view, context, model, name):
    return display.local(getattr(model, name))


class OpeningView(ShopModelView):
    can_create = False
    can_edit = False
    can_delete = False
    named_filter_urls = True
    details_template = "admin/opening_details.html"

    column_list = ["id", "starts_at", "resource", "service", "status", "offers", "booking"]
    column_labels = {
        "id": "#",
        "starts_at": "Starts",
        "offers": "Offers sent",
        "booking": "Recovered booking",
    }
    column_sortable_list = ["id", "starts_at", "status"]
    column_default_sort = ("starts_at", True)
    column_formatters = {
        "status": _status,
        "offers": _offers_sent,
        "booking": _booking_link,
        "starts_at": _local,
    }
    column_filters = [
        status_filter(SlotOpening.status, OpeningStatus),
        *local_date_filters(SlotOpening.starts_at, "Starts"),
    ]

    @expose("/details/")
    def details_view(self):
        opening = self.get_one(request.args.get("id"))
        _, entries = opening_timeline(db.session, opening.id)
        return self.render(
            self.details_template,
            opening=opening,
            offers=opening.offers,
            booking=recovered_booking(opening),
            timeline=_in_local_words(opening, entries),
            display=display,
            return_url=self.get_url(".index_view"),
        )

    @action("retrigger", "Re-trigger: offer the next customer now")
    def action_retrigger(self, ids):
        now = utcnow()
        for opening in self.scoped_rows(ids):
            if opening.status != OpeningStatus.OPEN:
                flash(f"Opening #{opening.id} is {opening.status}: nothing to offer.", "warning")
                continue
            before = locked_opening_state(opening)
            outcome = retrigger(db.session, opening.id, now)
            audit.record_change(
                db.session,
                current_user,
                AuditAction.RETRIGGER,
                opening,
                before,
                opening_state(opening),
                outcome,
            )
            flash(f"Opening #{opening.id}: {outcome}.", "success")
        db.session.commit()

    @action("expire", "Expire", "Stop recovering the selected openings?")
    def action_expire(self, ids):
        now = utcnow()
        for opening in self.scoped_rows(ids):
            note = f"expired by {current_user.email}"
            before = locked_opening_state(opening)
            if expire_opening(db.session, opening.id, note, now):
                after = opening_state(opening)
                audit.record_change(
                    db.session, current_user, AuditAction.EXPIRE_OPENING, opening, before, after
                )
                flash(f"Opening #{opening.id} expired.", "success")
            else:
                flash(f"Opening #{opening.id} is {opening.status}: left as it is.", "warning")
        db.session.commit()


def _in_local_words(opening: SlotOpening, entries: list[Entry]) -> list[Entry]:
    """The domain's timeline, with its offer lines rewritten in the shop's time zone
    (the shell version speaks UTC)."""
    rewritten = [e for e in entries if e.kind != "offer"]
    for offer in opening.offers:
        who = f"{offer.customer.name} ({offer.customer.phone})"
        expires = display.local(offer.expires_at, "%H:%M")
        rewritten.append(
            Entry(offer.sent_at, "offer", f"offer #{offer.id} sent to {who}, expires {expires}")
        )
        if offer.responded_at:
            answer = f"offer #{offer.id} {offer.status}"
            rewritten.append(Entry(offer.responded_at, "offer", answer))
        elif offer.status == OfferStatus.EXPIRED:
            rewritten.append(Entry(offer.expires_at, "offer", f"offer #{offer.id} expired"))
    rewritten.sort(key=lambda e: e.at)
    return rewritten


def _customer_link(view, context, model, name):
    return display.details_link("customers", model.customer_id, model.customer.name)


def _opening_link(view, context, model, name):
    opening_id = model.slot_opening_id
    return display.details_link("openings", opening_id, f"Opening #{opening_id}")


# What cutting an offer short changes.
OFFER_FIELDS = ("status", "expires_at")


class OfferView(ShopModelView):
    can_create = False
    can_edit = False
    can_delete = False
    named_filter_urls = True

    column_list = ["id", "opening", "customer", "status", "sent_at", "expires_at", "responded_at"]
    column_details_list = column_list
    column_labels = {
        "id": "#",
        "sent_at": "Sent",
        "expires_at": "Expires",
        "responded_at": "Response",
    }
    column_sortable_list = ["id", "sent_at", "expires_at", "status"]
    column_default_sort = ("sent_at", True)
    column_formatters = {
        "status": _status,
        "customer": _customer_link,
        "opening": _opening_link,
    }
    column_formatters_detail = column_formatters
    column_filters = [
        status_filter(SlotOffer.status, OfferStatus),
        *local_date_filters(SlotOffer.sent_at, "Sent"),
    ]

    def scope(self, query):
        # Offers belong to a shop through their opening.
        return query.join(SlotOpening, SlotOffer.slot_opening_id == SlotOpening.id).filter(
            SlotOpening.shop_id == current_user.shop_id
        )

    @action("expire", "Expire now", "Expire the selected offers and offer the next customers?")
    def action_expire(self, ids):
        now = utcnow()
        for offer in self.scoped_rows(ids):
            before = self._locked_state(offer)
            outcome = expire_offer_now(db.session, offer.id, now)
            after = audit.snapshot(offer, OFFER_FIELDS)
            # An offer already answered or expired is left as it is, and nothing recorded.
            audit.record_change(
                db.session, current_user, AuditAction.EXPIRE_OFFER, offer, before, after, outcome
            )
            flash(f"Offer #{offer.id}: {outcome}.", "success")
        db.session.commit()

    def _locked_state(self, offer: SlotOffer) -> dict:
        """The offer as it stands under its opening's lock (the one its expiry takes)."""
        lock_opening(db.session, offer.slot_opening_id)
        return audit.snapshot(reload(db.session, SlotOffer, offer.id), OFFER_FIELDS)
