"""Sandbox tools: only while the sandbox providers are active (the demo, tests).

"Simulate SMS reply" goes through ``recovery.inbound.handle_inbound``, the same function
the Twilio webhook calls, so what staff try here is what a customer's text would do.
"""

from __future__ import annotations

import secrets

from flask import abort, current_app, flash, redirect, url_for
from flask_admin import BaseView, expose
from flask_login import current_user
from flask_wtf import FlaskForm
from sqlalchemy import select
from wtforms import StringField, TextAreaField
from wtforms.validators import DataRequired, Length

from admin import display
from admin.base import StaffOnly
from recovery.db import db, utcnow
from recovery.messaging.gateway import SandboxSender, sender_for
from recovery.messaging.outbox import sender_number
from recovery.messaging.phones import InvalidPhone, normalize_phone, region_for_locale
from recovery.models import (
    Appointment,
    Customer,
    Message,
    Payment,
    PaymentStatus,
    Shop,
)
from recovery.offers.inbound import InboundSms, handle_inbound
from recovery.payments.gateway import SANDBOX, configured_gateway_name


def sandbox_sms_active() -> bool:
    return isinstance(sender_for(current_app), SandboxSender)


def sandbox_payments_active() -> bool:
    return configured_gateway_name(current_app) == SANDBOX


class SimulateSmsForm(FlaskForm):
    from_number = StringField("From number", validators=[DataRequired(), Length(max=32)])
    body = TextAreaField("Text", validators=[DataRequired(), Length(max=1600)])


def _own_customer_phone(shop: Shop, raw: str) -> str | None:
    """``raw`` as E.164 if it is the phone of one of the shop's customers, else None."""
    try:
        phone = normalize_phone(raw, region_for_locale(shop.locale))
    except InvalidPhone:
        return None
    known = db.session.scalar(
        select(Customer.id).where(Customer.shop_id == shop.id, Customer.phone == phone)
    )
    return phone if known is not None else None


class SandboxView(StaffOnly, BaseView):
    """The sandbox outbox, a simulated customer reply, and pending sandbox payments."""

    def is_visible(self) -> bool:
        return current_user.is_authenticated and (sandbox_sms_active() or sandbox_payments_active())

    def _require_sandbox(self) -> None:
        if not (sandbox_sms_active() or sandbox_payments_active()):
            abort(404)

    @expose("/", methods=("GET", "POST"))
    def index(self):
        self._require_sandbox()
        shop = current_user.shop
        form = SimulateSmsForm()
        if sandbox_sms_active() and form.validate_on_submit():
            from_number = _own_customer_phone(shop, form.from_number.data)
            if from_number is None:
                flash(
                    f"{form.from_number.data.strip()} is not the number of one of "
                    f"{shop.name}'s customers: nothing was simulated.",
                    "error",
                )
                return redirect(url_for(".index"))
            sms = InboundSms(
                sid="SMsim" + secrets.token_hex(16),
                from_number=from_number,
                to_number=sender_number(shop),
                body=form.body.data,
            )
            # Only this shop's customers: shops sharing the sender number are not reached.
            reply = handle_inbound(db.session, sms, utcnow(), shop_id=shop.id)
            db.session.commit()
            flash(f"Reply sent to {sms.from_number}: {reply.text}", "success")
            return redirect(url_for(".index"))
        customers = db.session.scalars(
            select(Customer).where(Customer.shop_id == shop.id).order_by(Customer.name)
        ).all()
        outbox = db.session.scalars(
            select(Message)
            .where(Message.shop_id == shop.id)
            .order_by(Message.created_at.desc(), Message.id.desc())
            .limit(20)
        ).all()
        pending = db.session.scalars(
            select(Payment)
            .join(Appointment, Payment.appointment_id == Appointment.id)
            .where(
                Appointment.shop_id == shop.id,
                Payment.status == PaymentStatus.PENDING,
                Payment.provider == SANDBOX,
            )
            .order_by(Payment.id)
        ).all()
        return self.render(
            "admin/sandbox.html",
            form=form,
            customers=customers,
            outbox=outbox,
            pending=pending,
            to_number=sender_number(shop),
            sms_active=sandbox_sms_active(),
            payments_active=sandbox_payments_active(),
            display=display,
        )
