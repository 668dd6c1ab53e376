"""``/b/<token>``: the customer's manage page, linked from the confirmation and reminder texts.

GET only shows the booking (link previewers and chat apps fetch links, so it must never
change anything). Cancelling takes two POSTs: the first shows what cancelling would
refund and asks to confirm; the second, carrying ``confirm``, cancels and redirects
(303) back to the page, which then says the booking is cancelled.

CSRF: this blueprint is exempt from the app-wide check and each POST validates its
form's token itself. The page sends no referrer (the URL is the key), and Flask-WTF's
app-wide check refuses any HTTPS POST without a Referer header ("SSL strict"), so with
the global check the Cancel button would fail in production. The form's token (bound to
the session cookie, which is SameSite=Lax) still refuses a POST forged by another site.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from babel.dates import format_datetime
from flask import Blueprint, redirect, render_template, url_for
from flask_wtf import FlaskForm
from wtforms import HiddenField

from recovery.booking.manage import (
    ManagePage,
    ManageState,
    RefundChanged,
    SelfCancelRefused,
    cancel_by_customer,
    find_booking,
    manage_page,
)
from recovery.db import db, utcnow
from recovery.http.private import keep_private
from recovery.models import Shop
from recovery.payments.money import format_money

bp = Blueprint("manage", __name__, template_folder="templates")
# The token is the key to this page: every answer under it stays private. Its Content
# Security Policy (no script at all) is ``security.MANAGE_POLICY``.
bp.after_request(keep_private)


class CancelForm(FlaskForm):
    """Both steps' form: the CSRF token, and on the final step ``confirm`` and the
    refund the customer was shown (so a changed refund is asked about again)."""

    confirm = HiddenField()
    refund = HiddenField()


def _when(shop: Shop, at: datetime) -> str:
    return format_datetime(
        at.astimezone(ZoneInfo(shop.timezone)), "EEEE d MMMM, HH:mm", locale="en"
    )


def _render(template: str, view: ManagePage, status: int = 200, **extra):
    appt = view.appointment
    shop = appt.shop

    def money(minor: int) -> str:
        return format_money(minor, view.currency, shop.locale)

    pending = view.pending_payment
    html = render_template(
        template,
        view=view,
        shop=shop,
        service=appt.service,
        token=appt.manage_token,
        when=_when(shop, appt.starts_at),
        paid=money(view.paid_minor),
        refund_now=money(view.refund_now_minor),
        refunded=money(view.refunded_minor),
        full_refund_until=view.full_refund_until and _when(shop, view.full_refund_until),
        late_percent=shop.late_refund_percent,
        pending_amount=pending and money(pending.amount_minor),
        pending_token=pending and pending.token,
        **extra,
    )
    return html, status


def _gone():
    return render_template("manage/gone.html"), 404


# ``path`` converters: a token with a slash in it still reaches these views and gets the
# plain "not valid" page with the private headers, not the app's generic 404 or 405.
@bp.get("/b/<path:token>")
def page(token: str):
    appt = find_booking(db.session, token)
    if appt is None:
        return _gone()
    return _render("manage/page.html", manage_page(appt, utcnow()), form=CancelForm())


@bp.get("/b/<path:token>/cancel")
def cancel_get(token: str):
    # A reload or a bookmark of the confirmation step: back to the page, nothing changes.
    if find_booking(db.session, token) is None:
        return _gone()
    return redirect(url_for("manage.page", token=token), 303)


@bp.post("/b/<path:token>/cancel")
def cancel(token: str):
    appt = find_booking(db.session, token)
    if appt is None:
        return _gone()
    form = CancelForm()
    if not form.validate():
        return render_template("manage/expired.html", token=token), 400
    now = utcnow()
    view = manage_page(appt, now)
    if view.state is ManageState.CANCELLED:  # a repeated tap after cancelling: nothing to do
        return redirect(url_for("manage.page", token=token), 303)
    if not view.can_cancel:
        return _render("manage/page.html", view, 409, form=None)
    if not form.confirm.data:
        return _render("manage/confirm.html", view, form=CancelForm(formdata=None))

    try:
        quoted = int(form.refund.data)
    except (TypeError, ValueError):
        quoted = None  # a hand-made form: the refund is still by policy
    try:
        cancel_by_customer(db.session, token, now, quoted_refund_minor=quoted)
    except SelfCancelRefused:
        db.session.rollback()
        return _render("manage/page.html", manage_page(appt, now), 409, form=None)
    except RefundChanged:
        db.session.rollback()
        view = manage_page(appt, now)
        fresh = CancelForm(formdata=None)
        return _render("manage/confirm.html", view, 409, form=fresh, refund_changed=True)
    db.session.commit()
    return redirect(url_for("manage.page", token=token), 303)
