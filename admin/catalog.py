"""What a shop sells and where: services (with their deposit policy) and resources."""

from __future__ import annotations

from wtforms import SelectField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import (
    DataRequired,
    InputRequired,
    Length,
    NumberRange,
    Optional,
    ValidationError,
)

from admin import display
from admin.base import ShopModelView
from admin.fields import FormOnlyIntegerField, FormOnlyMoneyField, MoneyField
from recovery.models import DepositKind
from recovery.money import deposit_minor

DEPOSIT_CHOICES = [
    SelectChoice(DepositKind.NONE.value, "No deposit"),
    SelectChoice(DepositKind.FIXED.value, "Fixed amount"),
    SelectChoice(DepositKind.PERCENT.value, "Percentage of the price"),
    SelectChoice(DepositKind.FULL.value, "Full prepayment"),
]


def _price(view, context, model, name):
    return display.money(model.price_minor)


def _deposit(view, context, model, name):
    kind = DepositKind(model.deposit_kind)
    if kind is DepositKind.NONE:
        return "none"
    amount = display.money(deposit_minor(model))
    if kind is DepositKind.PERCENT:
        return f"{model.deposit_value}% ({amount})"
    if kind is DepositKind.FULL:
        return f"full prepayment ({amount})"
    return amount


class ServiceView(ShopModelView):
    column_list = ["name", "duration_minutes", "price_minor", "deposit", "active"]
    column_details_list = ["id", *column_list]
    column_labels = {
        "duration_minutes": "Minutes",
        "price_minor": "Price",
        "deposit_kind": "Deposit policy",
    }
    column_sortable_list = ["name", "duration_minutes", "price_minor"]
    column_default_sort = "name"
    column_formatters = {"price_minor": _price, "deposit": _deposit}
    column_formatters_detail = column_formatters

    form_columns = [
        "name",
        "duration_minutes",
        "price_minor",
        "deposit_kind",
        "deposit_amount",
        "deposit_percent",
        "active",
    ]
    form_overrides = {"price_minor": MoneyField, "deposit_kind": SelectField}
    form_extra_fields = {
        "deposit_amount": FormOnlyMoneyField(
            "Deposit amount", validators=[Optional()], description="For a fixed deposit."
        ),
        "deposit_percent": FormOnlyIntegerField(
            "Deposit %",
            validators=[Optional(), NumberRange(0, 100)],
            description="For a percentage deposit (0-100).",
        ),
    }
    form_args = {
        "name": {"validators": [DataRequired(), Length(max=120)]},
        "duration_minutes": {"validators": [DataRequired(), NumberRange(min=1, max=24 * 60)]},
        "price_minor": {"label": "Price", "validators": [InputRequired()]},
        "deposit_kind": {"label": "Deposit policy", "choices": DEPOSIT_CHOICES},
    }
    integrity_messages = {"uq_services_shop_id": "The shop already has a service of that name."}
    in_use_message = "This service has bookings: mark it inactive instead."

    def on_form_prefill(self, form, id):
        model = self.get_one(id)
        if model.deposit_kind == DepositKind.FIXED:
            form.deposit_amount.process_data(model.deposit_value)
        elif model.deposit_kind == DepositKind.PERCENT:
            form.deposit_percent.data = model.deposit_value

    def on_model_change(self, form, model, is_created):
        super().on_model_change(form, model, is_created)
        kind = DepositKind(model.deposit_kind)
        if kind is DepositKind.FIXED:
            amount = form.deposit_amount.minor()
            if amount is None:
                raise ValidationError("A fixed deposit needs an amount.")
            model.deposit_value = amount
        elif kind is DepositKind.PERCENT:
            if form.deposit_percent.data is None:
                raise ValidationError("A percentage deposit needs a percentage (0-100).")
            model.deposit_value = form.deposit_percent.data
        else:
            model.deposit_value = 0


class ResourceView(ShopModelView):
    column_list = ["name", "active"]
    column_details_list = ["id", "name", "active"]
    column_default_sort = "name"
    form_columns = ["name", "active"]
    form_args = {"name": {"validators": [DataRequired(), Length(max=120)]}}
    integrity_messages = {"uq_resources_shop_id": "The shop already has a resource of that name."}
    in_use_message = "This resource has bookings: mark it inactive instead."
