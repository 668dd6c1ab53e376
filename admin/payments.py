"""Payments (read-only), with the sandbox's "mark succeeded / failed" while it is active."""

from __future__ import annotations

from flask import abort, flash
from flask_admin.actions import action
from flask_login import current_user

from admin import display
from admin.base import ShopModelView
from admin.filters import local_date_filters, status_filter
from admin.sandbox import sandbox_payments_active
from recovery import audit
from recovery.audit import AuditAction
from recovery.booking.holds import confirm_payment, fail_payment
from recovery.db import db, lock_row, utcnow
from recovery.models import Appointment, Payment, PaymentStatus
from recovery.offers.locks import lock_booking
from recovery.payments.gateway import SANDBOX


def _amount(view, context, model, name):
    return display.money(getattr(model, name), model.currency)


def _status(view, context, model, name):
    return display.badge(model.status)


def payment_state(payment: Payment) -> dict:
    """What a payment outcome changes, as the audit trail keeps it."""
    return {
        **audit.snapshot(payment, ["status", "refunded_minor"]),
        "booking_status": audit.snapshot(payment.appointment, ["status"])["status"],
    }


def locked_payment_state(payment: Payment) -> dict:
    """The payment's state read under the locks the transition takes (booking, then
    payment, the loop's one order), so a webhook that got there first is not reported
    as this action's change."""
    lock_booking(db.session, payment.appointment_id)
    return payment_state(lock_row(db.session, Payment, payment.id))


def _appointment(view, context, model, name):
    appt = model.appointment
    return display.details_link("appointments", appt.id, f"#{appt.id} {appt.customer.name}")


class PaymentView(ShopModelView):
    can_create = False
    can_edit = False
    can_delete = False
    named_filter_urls = True

    column_list = [
        "id",
        "appointment",
        "amount_minor",
        "refunded_minor",
        "status",
        "provider",
        "created_at",
        "succeeded_at",
    ]
    column_details_list = [*column_list, "provider_ref", "updated_at"]
    column_labels = {
        "id": "#",
        "amount_minor": "Amount",
        "refunded_minor": "Refunded",
        "created_at": "Requested",
        "succeeded_at": "Paid",
        "provider_ref": "Provider reference",
    }
    column_sortable_list = ["id", "created_at", "status"]
    column_default_sort = ("id", True)
    column_formatters = {
        "amount_minor": _amount,
        "refunded_minor": _amount,
        "status": _status,
        "appointment": _appointment,
    }
    column_formatters_detail = column_formatters
    column_filters = [
        status_filter(Payment.status, PaymentStatus),
        *local_date_filters(Payment.created_at, "Requested"),
    ]

    def scope(self, query):
        # Payments belong to a shop through their appointment.
        return query.join(Appointment, Payment.appointment_id == Appointment.id).filter(
            Appointment.shop_id == current_user.shop_id
        )

    def is_action_allowed(self, name: str) -> bool:
        if name in ("mark_succeeded", "mark_failed"):
            return sandbox_payments_active()
        return super().is_action_allowed(name)

    def _sandbox_rows(self, ids) -> list[Payment]:
        if not sandbox_payments_active():
            abort(404)
        return self.scoped_rows(ids)

    def _mark(self, ids, transition, word: str, audit_action: AuditAction) -> None:
        """Run one payment outcome through the loop, as the gateway's webhook would, and
        keep it in the audit trail (same commit) if it changed anything."""
        for payment in self._sandbox_rows(ids):
            if payment.provider != SANDBOX:
                flash(f"Payment #{payment.id} is a {payment.provider} payment.", "error")
                continue
            before = locked_payment_state(payment)
            outcome = transition(db.session, payment.id, now=utcnow())
            after = payment_state(payment)
            audit.record_change(
                db.session, current_user, audit_action, payment, before, after, note=outcome
            )
            flash(f"Payment #{payment.id} marked {word}: {outcome}.", "success")
        db.session.commit()

    @action("mark_succeeded", "Sandbox: mark succeeded")
    def action_mark_succeeded(self, ids):
        self._mark(ids, confirm_payment, "succeeded", AuditAction.MARK_PAID)

    @action("mark_failed", "Sandbox: mark failed")
    def action_mark_failed(self, ids):
        self._mark(ids, fail_payment, "failed", AuditAction.MARK_FAILED)
