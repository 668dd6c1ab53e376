"""``/pay/<token>``: the "Complete payment" page a winner's SMS links to.

It names the shop, the time (in the shop's zone), the service and the amount, then hands
the card to Stripe (the card element talks to Stripe directly; we only hold the intent's
client secret). In sandbox mode it says so: no card is taken and staff mark the payment
paid or failed in the admin panel. The token is 144 random bits, so the URL is the key.
"""

from __future__ import annotations

import logging
from zoneinfo import ZoneInfo

from babel.dates import format_datetime, format_time
from flask import Blueprint, abort, current_app, render_template

from recovery.booking.checkout import open_checkout
from recovery.db import db, utcnow
from recovery.http.private import keep_private
from recovery.payments.gateway import SANDBOX, GatewayError, gateway_for
from recovery.payments.money import format_money

log = logging.getLogger(__name__)
bp = Blueprint("pay", __name__, template_folder="templates")
# The token is the key to this page: every answer under it, a 404 too, stays private.
bp.after_request(keep_private)


@bp.get("/pay/<token>")
def page(token: str):
    try:
        checkout = open_checkout(
            db.session, token, lambda provider: gateway_for(current_app, provider), utcnow()
        )
        db.session.commit()
    except GatewayError:
        db.session.rollback()
        log.exception("payment page: gateway unavailable")
        return render_template("pay/unavailable.html"), 503
    if checkout is None:
        abort(404)
    appt, payment = checkout.appointment, checkout.payment
    shop = appt.shop
    zone = ZoneInfo(shop.timezone)
    due = appt.payment_due_at
    html = render_template(
        "pay/page.html",
        checkout=checkout,
        shop=shop,
        service=appt.service,
        when=format_datetime(appt.starts_at.astimezone(zone), "EEEE d MMMM, HH:mm", locale="en"),
        amount=format_money(payment.amount_minor, payment.currency, shop.locale),
        refunded=payment.refunded_minor
        and format_money(payment.refunded_minor, payment.currency, shop.locale),
        pay_by=format_time(due.astimezone(zone), "HH:mm", locale="en") if due else None,
        sandbox=payment.provider == SANDBOX,
        publishable_key=current_app.config.get("STRIPE_PUBLISHABLE_KEY"),
    )
    return html, 200
