"""The admin home: the slot-recovery dashboard for a chosen period."""

from __future__ import annotations

from flask import flash, request
from flask_admin import AdminIndexView, expose
from flask_login import current_user

from admin import display
from admin.base import StaffOnly
from admin.chart import openings_chart
from admin.dashboard import compute, parse_period
from recovery.db import db, utcnow


class HomeView(StaffOnly, AdminIndexView):
    @expose("/")
    def index(self):
        shop = current_user.shop
        tz = display.zone(shop)
        today = utcnow().astimezone(tz).date()
        try:
            period = parse_period(request.args.get("start"), request.args.get("end"), today, tz)
        except (ValueError, OverflowError) as exc:
            flash(_period_error(exc), "error")
            period = parse_period(None, None, today, tz)
        metrics = compute(db.session, shop, period)
        return self.render(
            "admin/home.html",
            shop=shop,
            period=period,
            metrics=metrics,
            chart=openings_chart(metrics.per_day),
            display=display,
        )


def _period_error(exc: ValueError | OverflowError) -> str:
    if isinstance(exc, OverflowError):  # parse_period bounds the years; this is a backstop
        years = f"{display.MIN_YEAR} and {display.MAX_YEAR}"
        return f"Pick dates between {years}; showing the last 7 days."
    text = str(exc)
    if text.startswith(("Invalid isoformat", "month must", "day is out", "year ")):
        return "Dates must look like 2026-01-31; showing the last 7 days."
    return f"{text} Showing the last 7 days."
