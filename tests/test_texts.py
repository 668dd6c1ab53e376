"""Offer texts in the shop's time zone and currency, within one GSM-7 segment."""

from datetime import UTC, datetime

import pytest

from recovery.messaging import texts
from recovery.messaging.gsm import is_gsm7, segments
from recovery.models import DepositKind, Service, Shop


def shop(**kw) -> Shop:
    defaults = dict(
        name="Fade Street Barbers",
        timezone="Europe/London",
        currency="GBP",
        locale="en_GB",
        contact_phone="+442071234567",
    )
    return Shop(**{**defaults, **kw})


def service(kind=DepositKind.FIXED, value=2000, price=5000) -> Service:
    return Service(
        name="Cut", duration_minutes=30, price_minor=price, deposit_kind=kind, deposit_value=value
    )


NOW = datetime(2026, 1, 12, 9, 0, tzinfo=UTC)  # Monday 09:00 in London (GMT)


def test_the_pitch_example_in_gbp():
    body = texts.offer(shop(), service(), datetime(2026, 1, 13, 10, 30, tzinfo=UTC), NOW)
    assert body == (
        "Fade Street Barbers: A slot opened tomorrow at 10:30. Reply YES to book. "
        "£20 deposit applies."
    )
    assert is_gsm7(body) and segments(body) == 1


def test_eur_shop_in_its_own_zone_and_format():
    paris = shop(name="Salon Lumière", timezone="Europe/Paris", currency="EUR", locale="fr_FR")
    body = texts.offer(paris, service(value=1550), datetime(2026, 1, 12, 16, 0, tzinfo=UTC), NOW)
    assert "today at 17:00" in body  # 16:00 UTC is 17:00 in Paris in January
    assert "15,50 € deposit applies." in body  # fr_FR money, GSM-7 spaces
    assert segments(body) == 1


def test_usd_shop_in_12_hour_time():
    ny = shop(name="Brooklyn Cuts", timezone="America/New_York", currency="USD", locale="en_US")
    starts = datetime(2026, 1, 15, 19, 30, tzinfo=UTC)  # Thursday 14:30 in New York
    body = texts.offer(ny, service(value=2500), starts, NOW)
    assert "on Thursday at 2:30 PM" in body
    assert "$25 deposit applies." in body
    assert is_gsm7(body) and segments(body) == 1


@pytest.mark.parametrize(
    ("starts", "words"),
    [
        (datetime(2026, 1, 12, 17, 0, tzinfo=UTC), "today at 17:00"),
        (datetime(2026, 1, 12, 23, 59, tzinfo=UTC), "today at 23:59"),
        (datetime(2026, 1, 13, 0, 0, tzinfo=UTC), "tomorrow at 00:00"),
        (datetime(2026, 1, 16, 12, 0, tzinfo=UTC), "on Friday at 12:00"),
        (datetime(2026, 1, 19, 12, 0, tzinfo=UTC), "on Mon 19 Jan at 12:00"),
    ],
)
def test_relative_day_words(starts, words):
    assert texts.when_words(starts, NOW, shop()) == words


def test_across_the_spring_daylight_saving_change():
    # London moves to BST at 01:00 UTC on Sunday 29 March 2026.
    now = datetime(2026, 3, 28, 22, 30, tzinfo=UTC)  # Saturday 22:30 GMT
    starts = datetime(2026, 3, 29, 9, 30, tzinfo=UTC)  # Sunday 10:30 BST
    assert texts.when_words(starts, now, shop()) == "tomorrow at 10:30"


def test_across_the_autumn_daylight_saving_change():
    # Back to GMT at 01:00 UTC on Sunday 25 October 2026: 23:30 UTC Saturday is 00:30 BST
    # on Sunday, so a Sunday slot is "today" there, not tomorrow.
    now = datetime(2026, 10, 24, 23, 30, tzinfo=UTC)
    starts = datetime(2026, 10, 25, 10, 30, tzinfo=UTC)  # 10:30 GMT
    assert texts.when_words(starts, now, shop()) == "today at 10:30"


def test_deposit_policies_in_words():
    assert texts.payment_words(service(DepositKind.NONE, 0), shop()) == "No deposit needed."
    assert texts.payment_words(service(DepositKind.PERCENT, 25), shop()) == (
        "£12.50 deposit applies."
    )
    assert texts.payment_words(service(DepositKind.FULL, 0), shop()) == (
        "Full payment of £50 applies."
    )


def test_a_long_shop_name_is_trimmed_to_keep_one_segment():
    long = shop(
        name="The Extraordinarily Long Named Hair and Beauty Emporium of Greater London "
        "and the Home Counties Limited"
    )
    body = texts.offer(
        long,
        service(DepositKind.FULL, 0, price=123456),
        datetime(2026, 1, 19, 12, 0, tzinfo=UTC),
        NOW,
    )
    assert segments(body) == 1 and len(body) <= 160
    assert body.endswith("Full payment of £1,234.56 applies.")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a" * 160, 1),
        ("a" * 161, 2),
        ("a" * 306, 2),
        ("a" * 307, 3),
        ("€" * 80, 1),
        ("€" * 81, 2),
        ("ü" + "a" * 159, 1),
        ("ł" * 70, 1),
        ("ł" * 71, 2),
    ],
)
def test_segments(text, expected):
    assert segments(text) == expected


def test_every_reply_fits_one_segment():
    s = shop()
    replies = [
        texts.declined(),
        texts.taken(),
        texts.expired(),
        texts.no_offer(),
        texts.already_yours(),
        *(texts.hold_released(s, NOW, NOW, why) for why in ("expired", "failed", "cancelled")),
        texts.late_payment_refunded(s, 12345),
        texts.cancelled_refunded(s, NOW, NOW, 12345),
        texts.opted_out(s),
        texts.opted_in(s),
        texts.help_text(s),
        texts.short_help(),
        texts.unknown_number(),
        texts.accepted_pay(s, 2000, 15, "https://slots.example.com/pay/pay_" + "x" * 24),
    ]
    for reply in replies:
        assert is_gsm7(reply) and segments(reply) == 1, reply
