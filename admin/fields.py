"""Form fields that read and write in the shop's terms: local wall-clock times, money."""

from __future__ import annotations

from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal

from babel.numbers import get_currency_precision
from flask_admin.contrib.sqla.fields import QuerySelectField
from wtforms import DateTimeLocalField, DecimalField, IntegerField, PasswordField
from wtforms.fields.choices import Choice
from wtforms.validators import ValidationError

from admin.display import shop, to_utc, zone
from recovery.payments.money import minor_per_unit


class LocalDateTimeField(DateTimeLocalField):
    """Shows a UTC column as the shop's local time; stores what staff type, read in the
    shop's zone, as UTC."""

    def __init__(self, label=None, validators=None, **kwargs):
        super().__init__(label, validators, format="%Y-%m-%dT%H:%M", **kwargs)

    def process_data(self, value):
        if isinstance(value, datetime) and value.tzinfo is not None:
            value = value.astimezone(zone()).replace(tzinfo=None)
        super().process_data(value)

    def utc(self) -> datetime | None:
        return to_utc(self.data, zone()) if self.data else None

    def populate_obj(self, obj, name):
        setattr(obj, name, self.utc())


def to_minor(amount: Decimal, currency: str) -> int:
    per_unit = minor_per_unit(currency)
    return int((amount * per_unit).quantize(Decimal(1), rounding=ROUND_HALF_UP))


# The largest amount a form takes, in minor units (a million pounds; fits an ``integer``).
MAX_MINOR = 100_000_000


class MoneyField(DecimalField):
    """An amount typed in the shop's currency (``20.50``), stored in minor units (2050)."""

    def __init__(self, label=None, validators=None, **kwargs):
        super().__init__(label, validators, places=None, **kwargs)

    def process_data(self, value):
        if isinstance(value, int):
            # 4550 -> Decimal("45.50"): the currency's own number of decimals.
            value = Decimal(value).scaleb(-get_currency_precision(shop().currency))
        super().process_data(value)

    def pre_validate(self, form):
        if self.data is None:
            return
        # Decimal reads "NaN", "sNaN" and "Infinity" as numbers; none is an amount.
        if not Decimal(self.data).is_finite():
            raise ValidationError("Not an amount: type a number such as 20.50.")
        if self.data < 0:
            raise ValidationError("An amount cannot be negative.")
        minor = self.minor()
        if minor is None or minor > MAX_MINOR:
            raise ValidationError("That amount is too large.")

    def minor(self) -> int | None:
        if self.data is None:
            return None
        try:
            amount = Decimal(self.data)
            if not amount.is_finite():
                return None
            return to_minor(amount, shop().currency)
        except ArithmeticError:  # decimal's InvalidOperation and Overflow among them
            return None

    def populate_obj(self, obj, name):
        setattr(obj, name, self.minor())


class FormOnly:
    """Mixin for a form field that is read by the view, never copied onto the model."""

    def populate_obj(self, obj, name):
        pass


class FormOnlyMoneyField(FormOnly, MoneyField):
    pass


class FormOnlyIntegerField(FormOnly, IntegerField):
    pass


class NewPasswordField(FormOnly, PasswordField):
    pass


class ShopRowSelectField(QuerySelectField):
    """A select of related rows (give it a shop-scoped ``query_factory``).

    Flask-Admin 2.2's own field yields plain tuples, which WTForms 3.3 deprecates; this
    yields ``Choice`` values and is otherwise the same.
    """

    def iter_choices(self):
        for value, label, selected, render_kw in super().iter_choices():
            yield Choice(value, label, selected, render_kw)
