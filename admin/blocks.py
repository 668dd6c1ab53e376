"""Busy time: staff block a resource, or the whole shop, and booking and recovery obey.

Manual blocks are created, edited and deleted here, in the shop's time zone; synced
blocks (from a calendar) are shown but read-only. A block over existing bookings is
allowed, because staff may mean it, but only after a second submit that confirms the
bookings listed. Saving a block withdraws the open openings in its time, in the same
transaction (``offers.withdraw``).
"""

from __future__ import annotations

from datetime import timedelta

from flask import abort, flash, redirect, request, url_for
from flask_admin import expose
from flask_admin.actions import action
from flask_admin.contrib.sqla.filters import BaseSQLAFilter
from flask_login import current_user
from flask_wtf import FlaskForm
from markupsafe import Markup
from sqlalchemy import select
from wtforms import BooleanField, HiddenField, SelectField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import InputRequired, Length, ValidationError

from admin import display
from admin.base import MAX_ID, ShopModelView
from admin.fields import LocalDateTimeField
from recovery import audit
from recovery.audit import AuditAction
from recovery.availability.blocks import (
    MAX_BLOCK_LENGTH,
    BlockError,
    NeedsConfirmation,
    add_manual_block,
    delete_block,
    update_manual_block,
)
from recovery.db import db, utcnow
from recovery.errors import NotFound
from recovery.models import BlockSource, BusyBlock, Resource
from recovery.offers.withdraw import withdraw_blocked_openings

READ_ONLY_MESSAGE = "is synced from a calendar and read-only here: change it in that calendar."
# How far from today a block can start: further is a typo (year 0001, 2206).
YEARS_BACK, YEARS_AHEAD = 2, 5
_SOURCE_BADGES = {
    BlockSource.MANUAL: "secondary",
    BlockSource.GOOGLE: "info",
    BlockSource.ICS: "info",
}


def _today_local():
    return utcnow().astimezone(display.zone()).replace(tzinfo=None)


def _plausible_start(form, field) -> None:
    """Compared in the shop's wall-clock time, before it is turned into UTC (which
    overflows near year 1 or 9999)."""
    if field.data is None:
        return
    today = _today_local()
    earliest = today - timedelta(days=365 * YEARS_BACK)
    latest = today + timedelta(days=365 * YEARS_AHEAD)
    if not earliest <= field.data <= latest:
        raise ValidationError(
            f"Pick a start between {earliest:%d %b %Y} and {latest:%d %b %Y} "
            f"(at most {YEARS_BACK} years back and {YEARS_AHEAD} years ahead)."
        )


def _sane_end(form, field) -> None:
    start, end = form.starts_at.data, field.data
    if start is None or end is None:
        return
    if end <= start:
        raise ValidationError("The end must be after the start.")
    if end - start > MAX_BLOCK_LENGTH:
        raise ValidationError("A block can be at most two years long.")


class BlockForm(FlaskForm):
    resource = SelectField("Resource", choices=[])
    starts_at = LocalDateTimeField("Starts (shop time)", [InputRequired(), _plausible_start])
    ends_at = LocalDateTimeField("Ends (shop time)", [InputRequired(), _sane_end])
    reason = StringField("Reason", [Length(max=200)], description="Staff see it; customers don't.")
    confirm = BooleanField("Save it anyway: the bookings listed above stay as they are")
    # The bookings staff were shown: a booking made since then is asked about again.
    confirmed_ids = HiddenField()

    def resource_id(self) -> int | None:
        return int(self.resource.data) if self.resource.data else None

    def confirmed(self) -> set[int]:
        if not self.confirm.data:
            return set()
        ids = set()
        for part in (self.confirmed_ids.data or "").split(","):
            if part.strip().isdigit() and int(part) <= MAX_ID:
                ids.add(int(part))
        return ids


def _resource_choices() -> list[SelectChoice]:
    rows = db.session.scalars(
        select(Resource).where(Resource.shop_id == current_user.shop_id).order_by(Resource.name)
    )
    return [SelectChoice("", "Whole shop")] + [
        SelectChoice(str(r.id), r.name if r.active else f"{r.name} (inactive)") for r in rows
    ]


def _clash_rows(clashes) -> list[dict]:
    """What the confirmation step shows, read before the transaction is rolled back."""
    return [
        {
            "id": a.id,
            "starts": display.local(a.starts_at),
            "customer": a.customer.name,
            "resource": a.resource.name,
            "service": a.service.name,
            "status": a.status,
        }
        for a in clashes
    ]


# What the audit trail keeps of a block.
BLOCK_FIELDS = ("resource_id", "starts_at", "ends_at", "reason")


def _resource(view, context, model, name):
    if model.resource_id is None:
        return Markup('<span class="font-weight-bold">Whole shop</span>')
    return model.resource.name


def _source(view, context, model, name):
    colour = _SOURCE_BADGES.get(model.source, "light")
    label = model.source if model.is_manual else f"{model.source} (read-only)"
    template = Markup('<span class="badge badge-{}" data-source="{}">{}</span>')
    return template.format(colour, model.source, label)


class WhenFilter(BaseSQLAFilter):
    """Upcoming (not yet ended) blocks, past ones, or all; the list shows upcoming ones
    unless staff pick another."""

    OPTIONS = (("upcoming", "upcoming"), ("past", "past"), ("all", "all"))

    def __init__(self) -> None:
        super().__init__(BusyBlock.ends_at, "When", options=self.OPTIONS)

    def validate(self, value) -> bool:
        return value in dict(self.OPTIONS)

    def apply(self, query, value, alias=None):
        column = self.get_column(alias)
        if value == "all":
            return query
        if value == "past":
            return query.filter(column <= utcnow())
        return query.filter(column > utcnow())

    def operation(self) -> str:
        return "is"


class BusyBlockView(ShopModelView):
    named_filter_urls = True
    list_template = "admin/block_list.html"
    form_template = "admin/block_form.html"

    column_list = ["starts_at", "ends_at", "resource", "reason", "source"]
    column_details_list = ["id", *column_list, "created_at"]
    column_labels = {
        "starts_at": "Starts",
        "ends_at": "Ends",
        "resource": "Resource",
        "created_at": "Created",
    }
    column_sortable_list = ["starts_at", "ends_at", "source"]
    column_default_sort = ("starts_at", False)
    column_formatters = {"resource": _resource, "source": _source}
    column_formatters_detail = column_formatters
    column_filters = [WhenFilter()]

    # ---------------------------------------------------------------- list

    def get_list(self, page, sort_column, sort_desc, search, filters, *args, **kwargs):
        filters = list(filters or [])
        if not any(isinstance(self._filters[idx], WhenFilter) for idx, *_ in filters):
            index = next(i for i, f in enumerate(self._filters) if isinstance(f, WhenFilter))
            filters.append((index, "when", "upcoming"))
        return super().get_list(page, sort_column, sort_desc, search, filters, *args, **kwargs)

    # ---------------------------------------------------------------- create and edit

    @expose("/new/", methods=("GET", "POST"))
    def create_view(self):
        form = BlockForm()
        form.resource.choices = _resource_choices()
        return self._save(form, None)

    @expose("/edit/", methods=("GET", "POST"))
    def edit_view(self):
        block = self.get_one(request.args.get("id"))
        if not block.is_manual:
            flash(f"Block #{block.id} {READ_ONLY_MESSAGE}", "error")
            return redirect(url_for(".details_view", id=block.id))
        form = BlockForm()
        form.resource.choices = _resource_choices()
        if request.method == "GET":
            form.resource.data = str(block.resource_id or "")
            form.starts_at.process_data(block.starts_at)
            form.ends_at.process_data(block.ends_at)
            form.reason.data = block.reason
        return self._save(form, block)

    def _save(self, form: BlockForm, block: BusyBlock | None):
        """One submit saves; a block over bookings first shows them and needs a second
        submit with the confirmation ticked. Anything refused changes nothing (422)."""
        status, clashes = 200, []
        if form.validate_on_submit():
            now = utcnow()
            before = audit.snapshot(block, BLOCK_FIELDS) if block is not None else {}
            args = (
                form.resource_id(),
                form.starts_at.utc(),
                form.ends_at.utc(),
                form.reason.data or "",
            )
            try:
                if block is None:
                    change = add_manual_block(
                        db.session,
                        current_user.shop_id,
                        *args,
                        created_by_id=current_user.id,
                        confirmed_ids=form.confirmed(),
                    )
                else:
                    change = update_manual_block(
                        db.session,
                        current_user.shop_id,
                        block.id,
                        *args,
                        confirmed_ids=form.confirmed(),
                    )
                withdrawn = withdraw_blocked_openings(db.session, change.block.id, now)
                self._record(block, change, before, withdrawn)
            except NeedsConfirmation as exc:
                clashes = _clash_rows(exc.clashes)
                db.session.rollback()
                form.confirmed_ids.data = ",".join(str(row["id"]) for row in clashes)
                form.confirm.data = False
            except (BlockError, NotFound) as exc:
                db.session.rollback()
                why = str(exc)
                form.ends_at.errors = [*form.ends_at.errors, why[:1].upper() + why[1:] + "."]
                status = 422
            else:
                saved = change.block.id
                db.session.commit()
                message = f"Block #{saved} saved."
                if change.clashes:
                    message += f" {len(change.clashes)} booking(s) in its time were kept."
                if withdrawn:
                    message += (
                        f" {len(withdrawn)} open slot(s) in its time were withdrawn and any "
                        "customer with a live offer was told."
                    )
                flash(message, "success")
                return redirect(url_for(".index_view"))
        elif request.method == "POST":
            status = 422
        page = self.render(
            self.form_template, form=form, block=block, clashes=clashes, display=display
        )
        return page, status

    def _record(self, block, change, before: dict, withdrawn) -> None:
        """Blocks steer recovery (saving one withdraws the openings in its time): each
        save is kept in the audit trail, with what it withdrew, in the same commit."""
        after = audit.snapshot(change.block, BLOCK_FIELDS)
        was, became = audit.diff(before, after) if block is not None else ({}, after)
        if withdrawn:
            became["withdrawn_openings"] = [opening.id for opening in withdrawn]
        if block is not None and not was and not became:
            return  # saved unchanged: nothing happened
        action = AuditAction.BLOCK_ADDED if block is None else AuditAction.BLOCK_CHANGED
        audit.record(db.session, current_user, action, change.block, was, became)

    # ---------------------------------------------------------------- delete

    def delete_model(self, model) -> bool:
        if not model.is_manual:
            flash(f"Block #{model.id} {READ_ONLY_MESSAGE}", "error")
            return False
        self._delete(model)
        db.session.commit()
        return True

    @action("delete", "Delete", "Delete the selected blocks?")
    def action_delete(self, ids):
        rows = self.scoped_rows(ids)
        synced = [row for row in rows if not row.is_manual]
        if synced:
            names = ", ".join(f"#{row.id}" for row in synced)
            flash(f"Nothing was deleted: block {names} {READ_ONLY_MESSAGE}", "error")
            return None
        for row in rows:
            self._delete(row)
        db.session.commit()
        noun = "block was" if len(rows) == 1 else "blocks were"
        flash(f"{len(rows)} {noun} deleted.", "success")
        return None

    def _delete(self, block: BusyBlock) -> None:
        before = audit.snapshot(block, BLOCK_FIELDS)
        delete_block(db.session, current_user.shop_id, block.id)
        audit.record(db.session, current_user, AuditAction.BLOCK_DELETED, block, before, {})

    def on_model_change(self, form, model, is_created):
        # Every change goes through ``_save`` and the domain; Flask-Admin's own create and
        # edit paths are replaced above, so nothing may reach the model this way.
        abort(405)
