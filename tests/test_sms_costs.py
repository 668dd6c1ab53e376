"""SMS count, segments and estimated cost by purpose group: the domain query, the
dashboard's table and the messages list's summary, always for the staff's shop only."""

from __future__ import annotations

import re
from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest

from admin.dashboard import compute, parse_period
from recovery.messaging.costs import sms_costs
from recovery.messaging.outbox import PurposeGroup
from recovery.models import Message
from tests.admin_support import *  # noqa: F403 (the shared fixtures)
from tests.admin_support import login

# Shop A's texts in the dashboard's default period (the last 7 days), on top of the offer
# text every admin test shop has (sent, 1 segment, 4p): (purpose, status, segments, sid).
TEXTS = [
    ("booked", "delivered", 2, True),
    ("reminder", "sent", 1, True),
    ("reminder", "failed", 1, True),  # accepted, then the carrier failed it: billed
    ("payment_request", "sent", 1, True),
    ("reply", "sent", 1, False),  # the webhook's TwiML answer: Twilio sends it, no sid here
    ("cancelled", "delivered", 3, True),
    ("offer", "failed", 1, False),  # refused by the provider: never sent, not billed
    ("booked", "suppressed", 1, False),  # opted out before sending
    ("offer", "queued", 1, False),  # not sent yet
]

# (count, segments, cost in pence) per group, for the last 7 days.
EXPECTED = {
    PurposeGroup.OFFER: (1, 1, 4),
    PurposeGroup.CONFIRMATION: (1, 2, 8),
    PurposeGroup.REMINDER: (2, 2, 8),
    PurposeGroup.PAYMENT_REQUEST: (1, 1, 4),
    PurposeGroup.OTHER: (2, 4, 16),
}

_sids = iter(range(1, 10_000))


def text_message(world, purpose, status, segments=1, sid=False, **kw) -> Message:
    return Message(
        shop_id=world.shop.id,
        customer_id=world.customers[0].id,
        direction=kw.pop("direction", "outbound"),
        from_number=world.shop.sms_from_number,
        to_number=world.customers[0].phone,
        body="x" * segments,
        purpose=purpose,
        status=status,
        segments=segments,
        cost_estimate_minor=4 * segments,
        provider_sid=f"SMcost{world.shop.id}x{next(_sids)}" if sid else None,
        created_at=kw.pop("created_at"),
        **kw,
    )


@pytest.fixture
def texts(session, clock, shop_a, shop_b):
    now = clock.now
    for purpose, status, segments, sid in TEXTS:
        session.add(text_message(shop_a, purpose, status, segments, sid, created_at=now))
    # What the customer texted in: not an SMS the shop sends.
    session.add(
        text_message(
            shop_a, "inbound", "received", 5, sid=True, direction="inbound", created_at=now
        )
    )
    # Before the default period: only an "all dates" summary sees it.
    session.add(text_message(shop_a, "offer", "sent", 1, True, created_at=now - timedelta(days=10)))
    # Another shop's texts, in every group and larger, must never count for shop A.
    for purpose in ("offer", "booked", "reminder", "payment_request", "withdrawn"):
        session.add(text_message(shop_b, purpose, "delivered", 7, True, created_at=now))
    # An unknown sender's answer belongs to no shop.
    answer = text_message(shop_a, "reply", "sent", 1, created_at=now)
    answer.shop_id = answer.customer_id = None
    session.add(answer)
    session.commit()


def figures(costs) -> dict:
    return {g.group: (g.count, g.segments, g.cost_minor) for g in costs.groups}


# ---------------------------------------------------------------- the query


def test_costs_per_group_for_the_shop_and_period(session, clock, shop_a, texts):
    period = parse_period(None, None, clock.now.date(), ZoneInfo(shop_a.shop.timezone))
    costs = sms_costs(session, shop_a.shop.id, period.starts, period.ends)
    assert [g.group for g in costs.groups] == list(PurposeGroup)
    assert figures(costs) == EXPECTED
    assert (costs.count, costs.segments, costs.cost_minor) == (7, 10, 40)


def test_open_bounds_count_every_date(session, shop_a, texts):
    costs = sms_costs(session, shop_a.shop.id)
    assert figures(costs)[PurposeGroup.OFFER] == (2, 2, 8)
    assert costs.count == 8


def test_every_group_is_there_when_nothing_was_sent(session, clock, shop_a, texts):
    later = clock.now + timedelta(days=30)
    costs = sms_costs(session, shop_a.shop.id, later, later + timedelta(days=1))
    assert figures(costs) == {group: (0, 0, 0) for group in PurposeGroup}


def test_another_shops_texts_never_count(session, clock, shop_a, shop_b, texts):
    mine = sms_costs(session, shop_a.shop.id)
    theirs = sms_costs(session, shop_b.shop.id)
    # Shop B: its world's offer text (1 segment) and the five 7-segment texts above.
    assert figures(theirs) == {
        PurposeGroup.OFFER: (2, 8, 32),
        PurposeGroup.CONFIRMATION: (1, 7, 28),
        PurposeGroup.REMINDER: (1, 7, 28),
        PurposeGroup.PAYMENT_REQUEST: (1, 7, 28),
        PurposeGroup.OTHER: (1, 7, 28),
    }
    assert mine.count == 8 and mine.segments == 11


def test_the_dashboard_totals_are_the_groups_sums(session, clock, shop_a, texts):
    period = parse_period(None, None, clock.now.date(), ZoneInfo(shop_a.shop.timezone))
    metrics = compute(session, shop_a.shop, period)
    assert figures(metrics.sms) == EXPECTED
    assert (metrics.sms_sent, metrics.sms_segments, metrics.sms_cost_minor) == (7, 10, 40)


# ---------------------------------------------------------------- the pages


def table(page: str) -> dict[str, tuple[str, str, str]]:
    """The cost table's rows: group (or "total") -> (texts, segments, cost) as shown."""
    block = page[page.index('data-testid="sms-costs"') :]
    block = block[: block.index("</table>")]
    rows = {}
    for group, row in re.findall(r'<tr data-group="([^"]+)">(.*?)</tr>', block, re.S):
        cells = dict(re.findall(r'data-field="(\w+)">(.*?)</t[dh]>', row, re.S))
        count = re.sub(r"<[^>]+>", "", cells["count"]).strip()
        rows[group] = (count, cells["segments"].strip(), cells["cost"].strip())
    return rows


def shown(expected: dict) -> dict:
    return {
        group.value: (str(n), str(segs), f"£{cost / 100:.2f}")
        for group, (n, segs, cost) in expected.items()
    }


def test_the_dashboard_shows_costs_by_purpose(owner_client, texts):
    page = owner_client.get("/admin/").get_data(as_text=True)
    rows = table(page)
    assert rows == {**shown(EXPECTED), "total": ("7", "10", "£0.40")}
    assert "Outbound texts only" in page and "suppressed" in page
    assert re.search(r'data-metric="sms">7<', page)
    # Each count opens the messages list on that group and the period.
    assert "flt0_purpose_group_equals=confirmation" in page
    assert "flt1_date_from=2026-01-06" in page and "flt2_date_until=2026-01-12" in page


def test_the_dashboard_period_narrows_the_table(owner_client, texts):
    page = owner_client.get("/admin/?start=2026-01-02&end=2026-01-02").get_data(as_text=True)
    rows = table(page)
    assert rows["offer"] == ("1", "1", "£0.04")
    assert rows["total"] == ("1", "1", "£0.04")


def test_the_messages_list_sums_every_date_without_a_date_filter(owner_client, texts):
    page = owner_client.get("/admin/messages/").get_data(as_text=True)
    assert "SMS sent by purpose, all dates" in page
    rows = table(page)
    assert rows["offer"] == ("2", "2", "£0.08")
    assert rows["total"] == ("8", "11", "£0.44")
    assert "Outbound texts only" in page
    # The summary sits above the list.
    assert page.index('data-testid="sms-costs"') < page.index("model-list")


def test_the_messages_list_summary_follows_the_date_filters(owner_client, texts):
    url = "/admin/messages/?flt0_date_from=2026-01-10&flt1_date_until=2026-01-12"
    page = owner_client.get(url).get_data(as_text=True)
    assert "SMS sent by purpose, 10 Jan 2026 to 12 Jan 2026" in page
    assert table(page) == {**shown(EXPECTED), "total": ("7", "10", "£0.40")}
    one_day = owner_client.get("/admin/messages/?flt0_date_on=2026-01-02").get_data(as_text=True)
    assert "SMS sent by purpose, 02 Jan 2026" in one_day
    assert table(one_day)["total"] == ("1", "1", "£0.04")


def test_the_purpose_group_filter(owner_client, shop_a, texts):
    page = owner_client.get("/admin/messages/?flt0_purpose_group_equals=confirmation")
    assert page.status_code == 200
    listed = re.findall(r'<td class="col-purpose">\s*(\w+)\s*</td>', page.get_data(as_text=True))
    assert listed and set(listed) == {"booked"}
    other = owner_client.get("/admin/messages/?flt0_purpose_group_equals=other")
    purposes = set(
        re.findall(r'<td class="col-purpose">\s*(\w+)\s*</td>', other.get_data(as_text=True))
    )
    assert purposes == {"reply", "cancelled", "inbound"}
    # Not a group: refused like any bad filter value, the list still shows.
    assert owner_client.get("/admin/messages/?flt0_purpose_group_equals=nope").status_code == 200


def test_shop_b_staff_see_only_shop_b(app, shop_b, texts):
    client = app.test_client()
    assert login(client, shop_b.owner.email).status_code == 302
    rows = table(client.get("/admin/messages/").get_data(as_text=True))
    assert rows["offer"] == ("2", "8", "£0.32")
    assert rows["total"] == ("6", "36", "£1.44")
