"""Appointments: list, create and edit (overlaps refused clearly), cancel, refund."""

from __future__ import annotations

from datetime import timedelta

from flask import flash, redirect, request, url_for
from flask_admin import expose
from flask_admin.actions import action
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import HiddenField, SelectField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, InputRequired, Length, ValidationError

from admin import display
from admin.base import ShopModelView, shop_rows
from admin.fields import LocalDateTimeField, MoneyField, ShopRowSelectField
from admin.filters import local_date_filters, status_filter
from admin.sandbox import sandbox_payments_active
from recovery.booking import SlotTaken, ensure_free
from recovery.db import db, utcnow
from recovery.loop import InvalidTransition, NotFound, cancel_appointment
from recovery.models import (
    Appointment,
    AppointmentStatus,
    Customer,
    Resource,
    Service,
)
from recovery.refunds import RefundError, new_idempotency_key, request_refund

OVERLAP_MESSAGE = "That resource is already booked at that time: pick another time or resource."
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
    # One key per form shown: submitting the same form twice refunds once.
    idempotency_key = HiddenField(validators=[DataRequired(), Length(max=80)])


class AppointmentView(ShopModelView):
    can_delete = False  # a booking is cancelled (which may recover the slot), never deleted
    named_filter_urls = True
    details_template = "admin/appointment_details.html"

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
        if is_created:
            model.status = AppointmentStatus.BOOKED
        elif model.status != AppointmentStatus.BOOKED:
            raise ValidationError(
                f"Only a booked appointment can be edited (this one is {model.status})."
            )
        model.ends_at = model.starts_at + timedelta(minutes=model.service.duration_minutes)
        # The exclusion constraint would refuse it too (and settles races): this check
        # names the clash before the database does. No autoflush: the row being saved
        # must not be written before it is checked.
        with db.session.no_autoflush:
            try:
                resource_id = model.resource.id
                ensure_free(db.session, resource_id, model.starts_at, model.ends_at, model.id)
            except SlotTaken as exc:
                raise ValidationError(f"{OVERLAP_MESSAGE} ({exc})") from None

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
                result = cancel_appointment(
                    db.session, appt.id, reason=f"cancelled by {current_user.email}", now=now
                )
            except (InvalidTransition, NotFound) as exc:
                flash(f"Booking #{appt.id} not cancelled: {exc}.", "error")
                continue
            flash(f"Booking #{appt.id} cancelled: {result.note}.", "success")
        db.session.commit()

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
            form.idempotency_key.data = new_idempotency_key()
            if refundable:
                form.amount.process_data(refundable[0].refundable_minor)
        status = 200
        if form.validate_on_submit():
            # MoneyField refuses what has no amount in minor units; never pass None on.
            amount_minor = form.amount.minor()
            try:
                if amount_minor is None:
                    raise RefundError("not an amount: type a number such as 20.50")
                refund = request_refund(
                    db.session,
                    form.payment_id.data,
                    amount_minor,
                    form.reason.data,
                    form.idempotency_key.data,
                    staff_id=current_user.id,
                    now=utcnow(),
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

    def render(self, template, **kwargs):
        # The details page shows the sandbox's "mark paid / failed" buttons when active.
        kwargs.setdefault("display", display)
        kwargs.setdefault("sandbox_payments", sandbox_payments_active())
        return super().render(template, **kwargs)
