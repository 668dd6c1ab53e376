"""Customers: search, SMS opt-in state, phones stored as E.164, and a CSV import."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

from flask import request
from flask_admin import expose
from flask_login import current_user
from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from markupsafe import Markup
from sqlalchemy import select
from wtforms.validators import DataRequired, Length, ValidationError

from admin import display
from admin.base import ShopModelView
from recovery.db import db, try_insert
from recovery.messaging.phones import InvalidPhone, normalize_phone, region_for_locale
from recovery.models import Customer

DUPLICATE_PHONE = "Another customer of this shop already has that phone number."
MAX_IMPORT_BYTES = 1_000_000
TRUE_WORDS = {"1", "y", "yes", "true", "t", "on", "opted in", "opt-in"}


def e164(raw: str) -> str:
    """A phone typed by staff, read in the shop's country, as E.164 (or InvalidPhone)."""
    return normalize_phone(raw, region_for_locale(current_user.shop.locale))


def phone_validator(form, field) -> None:
    """Validate and normalise in one step, so the form stores what was checked."""
    try:
        field.data = e164(field.data or "")
    except InvalidPhone as exc:
        raise ValidationError(str(exc)) from None


def _opt_in(view, context, model, name):
    if model.opted_out_at is not None:
        when = display.local(model.opted_out_at, "%d %b %Y")
        return Markup('<span class="badge badge-dark">opted out (STOP) {}</span>').format(when)
    if model.sms_opt_in:
        return Markup('<span class="badge badge-success">opted in</span>')
    return Markup('<span class="badge badge-light">not opted in</span>')


class ImportForm(FlaskForm):
    file = FileField("CSV file", validators=[FileRequired()])


@dataclass(frozen=True)
class RowReport:
    line: int
    name: str
    phone: str
    outcome: str  # created | skipped | error
    detail: str


class CustomerView(ShopModelView):
    list_template = "admin/customer_list.html"
    column_list = ["name", "phone", "opt_in", "last_settled_at", "created_at"]
    column_details_list = ["id", "name", "phone", "opt_in", "last_settled_at", "created_at"]
    column_labels = {
        "opt_in": "SMS",
        "last_settled_at": "Last settled booking",
        "created_at": "Added",
        "sms_opt_in": "Agreed to SMS offers",
    }
    column_searchable_list = ["name", "phone"]
    column_sortable_list = ["name", "phone", "last_settled_at", "created_at"]
    column_default_sort = "name"
    column_formatters = {"opt_in": _opt_in}
    column_formatters_detail = column_formatters

    form_columns = ["name", "phone", "sms_opt_in"]
    form_args = {
        "name": {"validators": [DataRequired(), Length(max=120)]},
        "phone": {
            "validators": [DataRequired(), phone_validator],
            "description": "National numbers are read in the shop's country; stored as E.164.",
        },
    }
    integrity_messages = {"uq_customers_shop_id": DUPLICATE_PHONE}

    in_use_message = "This customer has history (bookings, offers or messages): keep them."

    @expose("/import/", methods=("GET", "POST"))
    def import_view(self):
        form = ImportForm()
        report: list[RowReport] | None = None
        status = 200
        if form.validate_on_submit():
            data = form.file.data.read(MAX_IMPORT_BYTES + 1)
            if len(data) > MAX_IMPORT_BYTES:
                form.file.errors.append("The file is larger than 1 MB: split it.")
                status = 422
            else:
                try:
                    report = import_customers(data.decode("utf-8-sig"))
                except (UnicodeDecodeError, ValueError, csv.Error) as exc:
                    db.session.rollback()
                    form.file.errors.append(_file_error(exc))
                    status = 422
                else:
                    db.session.commit()
        elif request.method == "POST":
            status = 422
        return self.render("admin/customer_import.html", form=form, report=report), status


def _file_error(exc: Exception) -> str:
    if isinstance(exc, UnicodeDecodeError):
        return "The file is not UTF-8 text: save it as CSV (UTF-8)."
    if isinstance(exc, csv.Error):
        return f"The file could not be read as CSV ({exc}): nothing was imported."
    return str(exc)


def import_customers(text: str) -> list[RowReport]:
    """Add each valid row as a customer of the staff's shop; report every row.

    Columns (header row required): ``name``, ``phone``, optional ``sms_opt_in``
    (yes/no). A phone that is invalid, or already a customer's, is reported and skipped.
    """
    reader = csv.DictReader(io.StringIO(text))
    headers = {(h or "").strip().lower() for h in reader.fieldnames or []}
    if not {"name", "phone"} <= headers:
        raise ValueError("The first row must name the columns: name, phone (and sms_opt_in).")
    shop_id = current_user.shop_id
    known = set(db.session.scalars(select(Customer.phone).where(Customer.shop_id == shop_id)))
    report = []
    try:
        for row in reader:
            report.append(_import_row(reader.line_num, row, shop_id, known))
    except csv.Error as exc:  # e.g. a field longer than the csv module's limit
        raise csv.Error(f"line {reader.line_num}: {exc}") from None
    return report


def _import_row(line: int, row: dict, shop_id: int, known: set[str]) -> RowReport:
    fields = {(k or "").strip().lower(): (v or "").strip() for k, v in row.items() if k}
    name, raw_phone = fields.get("name", ""), fields.get("phone", "")
    if any("\x00" in value for value in fields.values()):
        # PostgreSQL text cannot hold NUL; shown without it.
        name, raw_phone = name.replace("\x00", ""), raw_phone.replace("\x00", "")
        return RowReport(line, name, raw_phone, "error", "The row contains NUL characters.")
    if not name:
        return RowReport(line, name, raw_phone, "error", "Name is empty.")
    try:
        phone = e164(raw_phone)
    except InvalidPhone as exc:
        return RowReport(line, name, raw_phone, "error", str(exc))
    if phone in known:
        return RowReport(line, name, phone, "skipped", "Already a customer.")
    opt_in = fields.get("sms_opt_in", "").lower() in TRUE_WORDS
    customer = try_insert(
        db.session, Customer(shop_id=shop_id, name=name[:120], phone=phone, sms_opt_in=opt_in)
    )
    if customer is None:  # added by someone else meanwhile
        return RowReport(line, name, phone, "skipped", "Already a customer.")
    known.add(phone)
    detail = "opted in to SMS offers" if opt_in else "not opted in to SMS offers"
    return RowReport(line, name, phone, "created", detail)
