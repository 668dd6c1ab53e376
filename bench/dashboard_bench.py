"""B8, dashboard part: the admin dashboard (``/admin/``) timed through the Flask test client.

Called by ``bench.calendar_bench.run`` with a client already logged in as a staff member
of the B8 shop (a year of history behind it), so each time covers the whole request:
session, the dashboard's queries (``admin.dashboard.compute``: openings and their
outcomes, recovered bookings and revenue, SMS counts and cost by purpose), the chart and
the template. Two periods: the default (the last 7 days) and a whole year (the last 366
days, the longest period the dashboard accepts). The figures the page shows are read back
from the HTML, so a page that quietly counted nothing would be noticed.
"""

from __future__ import annotations

import re
from datetime import date, timedelta

from bench.stats import time_page

FILLED_RE = re.compile(r"(\d+) filled of (\d+) openings")
SMS_RE = re.compile(r'data-metric="sms">\s*(\d+)')


def _time(client, url: str, requests: int) -> dict:
    timed, page = time_page(client, url, requests)
    filled = FILLED_RE.search(page)
    sms = SMS_RE.search(page)
    assert filled and sms, "the dashboard showed no metrics"
    return {
        **timed,
        "bytes": len(page.encode()),
        "openings_shown": int(filled.group(2)),
        "filled_shown": int(filled.group(1)),
        "sms_shown": int(sms.group(1)),
    }


def run(client, requests: int, today: date | None = None) -> dict:
    today = today or date.today()
    year_start = today - timedelta(days=365)  # 366 days inclusive: MAX_DAYS
    return {
        "dashboard": _time(client, "/admin/", requests),
        "dashboard_year": _time(
            client, f"/admin/?start={year_start.isoformat()}&end={today.isoformat()}", requests
        ),
    }
