"""Appointments: list, create and edit (overlaps refused clearly), cancel, refund."""

from __future__ import annotations

from datetime import timedelta

from flask import flash, redirect, request, url_for
from flask_admin import expose
from flask_admin.actions import action
from flask_login import current_user
from flask_wtf import FlaskForm
from sqlalchemy import inspect as sa_inspect
from sqlalchemy import select
from wtforms import HiddenField, SelectField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, InputRequired, Length, ValidationError

from admin import display, refund_keys
from admin.base import ShopModelView, shop_rows
from admin.fields import LocalDateTimeField, MoneyField, ShopRowSelectField
from admin.filters import local_date_filters, status_filter
from admin.sandbox import sandbox_payments_active
from recovery import audit
from recovery.audit import AuditAction
from recovery.availability.blocks import TimeBlocked, ensure_not_blocked
from recovery.availability.overlap import SlotTaken, ensure_free
from recovery.booking.cancellation import cancel_appointment
from recovery.booking.create import apply_deposit_rule, move_booking
from recovery.booking.holds import pay_at_desk, waive_deposit
from recovery.db import db, lock_row, utcnow
from recovery.errors import InvalidTransition, NotFound
from recovery.models import (
    Appointment,
    AppointmentStatus,
    Customer,
    Payment,
    PaymentStatus,
    Resource,
    Service,
)
from recovery.offers.locks import lock_booking
from recovery.payments.refunds import RefundError, request_refund

OVERLAP_MESSAGE = "That resource is already booked at that time: pick another time or resource."
BLOCKED_MESSAGE = "That time is blocked: pick another time or resource."
# How far from today a booking can start: further is a typo (year 0001, 2206).
YEARS_BACK, YEARS_AHEAD = 2, 5


def _plausible_start(form, field) -> None:
    """Compared in the shop's wall-clock time, before it is turned into UTC (which
    overflows near year 1 or 9999)."""
    if field.data is None:
        return
    today = utcnow().astimezone(display.zone()).replace(tzinfo=None)
    earliest = today - timedelta(days=365 * YEARS_BACK)
    latest = today + timedelta(days=365 * YEARS_AHEAD)
    if not earliest <= field.data <= latest:
        raise ValidationError(
            f"Pick a start between {earliest:%d %b %Y} and {latest:%d %b %Y} "
            f"(at most {YEARS_BACK} years back and {YEARS_AHEAD} years ahead)."
        )


# What an edit of a booking can change, as the audit trail keeps it; the first three
# make it a move.
PLACEMENT = ("starts_at", "ends_at", "resource_id")
EDITABLE = (*PLACEMENT, "service_id", "customer_id")


def booking_state(appt: Appointment) -> dict:
    """What cancelling a booking or deciding its deposit changes: its status and money."""
    succeeded = [p for p in appt.payments if p.status == PaymentStatus.SUCCEEDED]
    return {
        **audit.snapshot(appt, ["status"]),
        "paid_minor": sum(p.amount_minor for p in succeeded),
        "refunded_minor": sum(p.refunded_minor for p in appt.payments),
        "deposit_waived": appt.deposit_waived_at is not None,
    }


def locked_booking_state(appt: Appointment) -> dict:
    """The booking's state read under the lock its transition takes (in the loop's order),
    so what another process changed first is not reported as this action's change."""
    locked = lock_booking(db.session, appt.id)
    # Its payments fresh too: changes to them take the booking's lock first.
    db.session.scalars(
        select(Payment)
        .where(Payment.appointment_id == appt.id)
        .execution_options(populate_existing=True)
    ).all()
    db.session.refresh(locked, ["payments"])
    return booking_state(locked)


def _status(view, context, model, name):
    return display.badge(model.status)


def _local(view, context, model, name):
    return display.local(getattr(model, name))


def _customer(view, context, model, name):
    return display.details_link("customers", model.customer_id, model.customer.name)


def _payment(view, context, model, name):
    payment = model.payments[-1] if model.payments else None
    if payment is None:
        return ""
    return (
        display.money(payment.amount_minor, payment.currency) + " " + display.badge(payment.status)
    )


def _source(view, context, model, name):
    if model.source_slot_opening_id is None:
        return ""
    opening_id = model.source_slot_opening_id
    return display.details_link("openings", opening_id, f"recovered (opening #{opening_id})")


class RefundForm(FlaskForm):
    payment_id = SelectField("Payment", coerce=int, validators=[InputRequired()])
    amount = MoneyField("Amount", validators=[InputRequired()])
    reason = StringField("Reason", validators=[DataRequired(), Length(max=200)])
    # One refund key per form shown, so submitting the same form twice refunds once. The
    # server makes the key and the field carries it signed (``admin.refund_keys``): what
    # the browser posts is checked by the view (which says so when it fails), never taken
    # as a key.
    form_token = HiddenField()


class DepositForm(FlaskForm):
    decision = SelectField(
        "Deposit",
        choices=[
            SelectChoice("desk", "Paid at the desk"),
            SelectChoice("waive", "Deposit waived"),
        ],
        validators=[InputRequired()],
    )
    reason = StringField("Reason", validators=[DataRequired(), Length(max=200)])


class AppointmentView(ShopModelView):
    can_delete = False  # a booking is cancelled (which may recover the slot), never deleted
    named_filter_urls = True
    details_template = "admin/appointment_details.html"
    # The manage token is the customer's key to cancel: it stays out of the panel.
    column_details_exclude_list = ["manage_token"]

    column_list = [
        "id",
        "starts_at",
        "customer",
        "service",
        "resource",
        "status",
        "payment",
        "source",
    ]
    column_labels = {
        "id": "#",
        "starts_at": "Starts",
        "payment": "Deposit",
        "source": "Origin",
        "source_slot_opening_id": "Recovered from opening",
    }
    column_sortable_list = ["id", "starts_at", "status"]
    column_default_sort = ("starts_at", True)
    column_formatters = {
        "status": _status,
        "starts_at": _local,
        "customer": _customer,
        "payment": _payment,
        "source": _source,
    }
    column_filters = [
        status_filter(Appointment.status, AppointmentStatus),
        *local_date_filters(Appointment.starts_at, "Starts"),
    ]

    form_columns = ["customer", "service", "resource", "starts_at"]
    form_overrides = {
        "starts_at": LocalDateTimeField,
        "customer": ShopRowSelectField,
        "service": ShopRowSelectField,
        "resource": ShopRowSelectField,
    }
    form_args = {
        "customer": {"query_factory": shop_rows(Customer, Customer.name)},
        "service": {"query_factory": shop_rows(Service, Service.name)},
        "resource": {"query_factory": shop_rows(Resource, Resource.name)},
        "starts_at": {
            "label": "Starts (shop time)",
            "validators": [InputRequired(), _plausible_start],
        },
    }
    integrity_messages = {"ex_appointments_no_overlap": OVERLAP_MESSAGE}

    def on_model_change(self, form, model, is_created):
        super().on_model_change(form, model, is_created)
        if not is_created and model.status != AppointmentStatus.BOOKED:
            raise ValidationError(
                f"Only a booked appointment can be edited (this one is {model.status})."
            )
        if not is_created:
            return self._move(model)
        model.ends_at = model.starts_at + timedelta(minutes=model.service.duration_minutes)
        # The exclusion constraint would refuse it too (and settles races): this check
        # names the clash before the database does. No autoflush: the row being saved
        # must not be written before it is checked.
        with db.session.no_autoflush:
            try:
                ensure_free(db.session, model.resource.id, model.starts_at, model.ends_at)
            except SlotTaken as exc:
                raise ValidationError(f"{OVERLAP_MESSAGE} ({exc})") from None
            try:
                ensure_not_blocked(
                    db.session, model.shop_id, model.resource.id, model.starts_at, model.ends_at
                )
            except TimeBlocked as exc:
                raise ValidationError(f"{BLOCKED_MESSAGE} ({exc})") from None
        # Every booking follows the shop's deposit rule: a deposit is asked for by SMS
        # (``pending_payment``) or, with none due, the booking is confirmed at once.
        model.status = AppointmentStatus.PENDING_PAYMENT
        db.session.flush()
        apply_deposit_rule(db.session, model, utcnow())
        return None

    def _move(self, model):
        """An edit that changes the time or resource is a move: the customer is told and
        reminded at the new time (``booking.create.move_booking``)."""
        before = self._stored(model.id)
        state = sa_inspect(model)
        new_start, new_resource = model.starts_at, model.resource.id
        old_start = state.attrs.starts_at.history.deleted
        old_resource = state.attrs.resource_id.history.deleted
        if old_start:
            model.starts_at = old_start[0]
        if old_resource:
            model.resource_id = old_resource[0]
        model.resource = db.session.get(Resource, model.resource_id)
        try:
            move_booking(db.session, model.id, new_start, new_resource, utcnow())
        except SlotTaken as exc:
            raise ValidationError(f"{OVERLAP_MESSAGE} ({exc})") from None
        except TimeBlocked as exc:
            raise ValidationError(f"{BLOCKED_MESSAGE} ({exc})") from None
        # A changed service changes the length even at the same time.
        previous_end = model.ends_at
        model.ends_at = model.starts_at + timedelta(minutes=model.service.duration_minutes)
        with db.session.no_autoflush:
            try:
                ensure_free(db.session, model.resource_id, model.starts_at, model.ends_at, model.id)
                # Only a new length is checked: a booking staff kept inside a block they
                # created over it can still be edited without being moved.
                if model.ends_at != previous_end:
                    ensure_not_blocked(
                        db.session, model.shop_id, model.resource_id, model.starts_at, model.ends_at
                    )
            except SlotTaken as exc:
                raise ValidationError(f"{OVERLAP_MESSAGE} ({exc})") from None
            except TimeBlocked as exc:
                raise ValidationError(f"{BLOCKED_MESSAGE} ({exc})") from None
        after = {
            **audit.snapshot(model, PLACEMENT),
            "service_id": model.service.id,
            "customer_id": model.customer.id,
        }
        # Committed by Flask-Admin together with the edit, or rolled back with it.
        moved = any(before[k] != after[k] for k in PLACEMENT)
        action = AuditAction.MOVE if moved else AuditAction.BOOKING_EDITED
        audit.record_change(db.session, current_user, action, model, before, after)

    def _stored(self, appointment_id: int) -> dict:
        """The booking as the database holds it, before this edit is flushed."""
        columns = [getattr(Appointment, name) for name in EDITABLE]
        with db.session.no_autoflush:
            row = db.session.execute(select(*columns).where(Appointment.id == appointment_id)).one()
        return audit.snapshot(row, EDITABLE)

    # ---------------------------------------------------------------- actions

    @action(
        "cancel",
        "Cancel (a paid future booking is offered to other customers)",
        "Cancel the selected bookings?",
    )
    def action_cancel(self, ids):
        now = utcnow()
        for appt in self.scoped_rows(ids):
            try:
                before = locked_booking_state(appt)
                result = cancel_appointment(
                    db.session, appt.id, reason=f"cancelled by {current_user.email}", now=now
                )
            except (InvalidTransition, NotFound) as exc:
                flash(f"Booking #{appt.id} not cancelled: {exc}.", "error")
                continue
            # Cancelling again (a double click) changes nothing and records nothing.
            after = booking_state(result.appointment)
            audit.record_change(
                db.session, current_user, AuditAction.CANCEL, appt, before, after, result.note
            )
            flash(f"Booking #{appt.id} cancelled: {result.note}.", "success")
        db.session.commit()

    @action("deposit", "Paid at the desk / waive deposit")
    def action_deposit(self, ids):
        rows = self.scoped_rows(ids)
        if len(rows) != 1:
            flash("Pick one booking.", "warning")
            return None
        return redirect(url_for(".deposit_view", id=rows[0].id))

    @expose("/deposit/", methods=("GET", "POST"))
    def deposit_view(self):
        """Staff record a deposit taken in the shop, or waive it: each needs a reason and
        is kept with the staff member and the time."""
        appt = self.get_one(request.args.get("id"))
        form = DepositForm()
        status = 200
        if form.validate_on_submit():
            decide = pay_at_desk if form.decision.data == "desk" else waive_deposit
            action = (
                AuditAction.DEPOSIT_AT_DESK if decide is pay_at_desk else AuditAction.DEPOSIT_WAIVED
            )
            try:
                before = locked_booking_state(appt)
                decide(db.session, appt.id, current_user.id, form.reason.data, utcnow())
                after = booking_state(appt)
                note = form.reason.data.strip()
                audit.record_change(db.session, current_user, action, appt, before, after, note)
            except (InvalidTransition, NotFound) as exc:
                db.session.rollback()
                form.reason.errors.append(str(exc).capitalize() + ".")
                status = 422
            else:
                db.session.commit()
                done = (
                    "Deposit recorded as paid at the desk"
                    if decide is pay_at_desk
                    else ("Deposit waived")
                )
                flash(f"{done}: booking #{appt.id} is confirmed.", "success")
                return redirect(url_for(".details_view", id=appt.id))
        elif request.method == "POST":
            status = 422
        return self.render("admin/deposit.html", appt=appt, form=form), status

    @action("refund", "Refund")
    def action_refund(self, ids):
        rows = self.scoped_rows(ids)
        if len(rows) != 1:
            flash("Pick one booking to refund.", "warning")
            return None
        return redirect(url_for(".refund_view", id=rows[0].id))

    @expose("/refund/", methods=("GET", "POST"))
    def refund_view(self):
        appt = self.get_one(request.args.get("id"))
        refundable = [p for p in appt.payments if p.refundable_minor > 0]
        form = RefundForm()
        form.payment_id.choices = [
            SelectChoice(
                p.id,
                f"#{p.id}: {display.money(p.amount_minor, p.currency)} paid, "
                f"{display.money(p.refundable_minor, p.currency)} refundable",
            )
            for p in refundable
        ]
        if request.method == "GET":
            form.form_token.data = refund_keys.issue(appt.id, current_user.id)
            if refundable:
                form.amount.process_data(refundable[0].refundable_minor)
        status = 200
        if form.validate_on_submit():
            # MoneyField refuses what has no amount in minor units; never pass None on.
            amount_minor = form.amount.minor()
            key = refund_keys.verified(form.form_token.data, appt.id, current_user.id)
            try:
                if key is None:
                    # Shown again with a key of its own, so a stale form can be resent.
                    form.form_token.data = refund_keys.issue(appt.id, current_user.id)
                    raise RefundError("this refund form has expired: check it and submit again")
                if amount_minor is None:
                    raise RefundError("not an amount: type a number such as 20.50")
                payment = self._refundable_payment(appt, form.payment_id.data)
                before = audit.snapshot(payment, ["refunded_minor"])
                refund = request_refund(
                    db.session,
                    form.payment_id.data,
                    amount_minor,
                    form.reason.data,
                    key,
                    staff_id=current_user.id,
                    now=utcnow(),
                )
                # The same form submitted twice refunds once, and is recorded once.
                audit.record_change(
                    db.session,
                    current_user,
                    AuditAction.REFUND,
                    payment,
                    before,
                    audit.snapshot(payment, ["refunded_minor"]),
                    f"refund #{refund.id}: {refund.reason}",
                )
            except RefundError as exc:
                db.session.rollback()
                form.amount.errors.append(str(exc).capitalize() + ".")
                status = 422
            else:
                db.session.commit()
                amount = display.money(refund.amount_minor, refund.payment.currency)
                flash(f"Refund of {amount} requested (refund #{refund.id}).", "success")
                return redirect(url_for(".details_view", id=appt.id))
        elif request.method == "POST":
            status = 422
        return self.render(
            "admin/refund.html", appt=appt, form=form, refundable=refundable, display=display
        ), status

    def _refundable_payment(self, appt: Appointment, payment_id: int) -> Payment:
        """One of this booking's payments, locked (``request_refund`` locks it first too)
        so the trail's "before" is what the refund changed."""
        payment = lock_row(db.session, Payment, payment_id)
        if payment is None or payment.appointment_id != appt.id:
            raise RefundError(f"no payment {payment_id} on this booking")
        return payment

    def render(self, template, **kwargs):
        # The details page shows the sandbox's "mark paid / failed" buttons when active.
        kwargs.setdefault("display", display)
        kwargs.setdefault("sandbox_payments", sandbox_payments_active())
        return super().render(template, **kwargs)
