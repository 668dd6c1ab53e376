"""Money in integer minor units: deposit rules and display in the shop's currency."""

from __future__ import annotations

from babel import Locale
from babel.numbers import format_currency, get_currency_precision

from recovery.models import DepositKind, Service


def minor_per_unit(currency: str) -> int:
    """100 for GBP/EUR/USD, 1 for JPY: from Babel's currency data."""
    return 10 ** get_currency_precision(currency)


def deposit_minor(service: Service) -> int:
    """What a booking of ``service`` must pay up front, in minor units.

    The same rule for ordinary and recovered bookings. Percentages round half up to the
    minor unit and never exceed the price.
    """
    kind = DepositKind(service.deposit_kind)
    if kind is DepositKind.NONE:
        return 0
    if kind is DepositKind.FIXED:
        return min(service.deposit_value, service.price_minor)
    if kind is DepositKind.PERCENT:
        return min((service.price_minor * service.deposit_value + 50) // 100, service.price_minor)
    return service.price_minor  # FULL


def format_money(amount_minor: int, currency: str, locale: str = "en_GB") -> str:
    """``2000, 'GBP'`` -> ``£20``; whole amounts drop the ``.00`` (shorter SMS)."""
    per_unit = minor_per_unit(currency)
    amount = amount_minor / per_unit
    if amount_minor % per_unit == 0:
        # The locale's own currency pattern, minus the fraction digits.
        pattern = Locale.parse(locale).currency_formats["standard"].pattern
        whole = pattern.split(";")[0].replace(".00", "")
        return format_currency(amount, currency, locale=locale, format=whole, currency_digits=False)
    return format_currency(amount, currency, locale=locale)
