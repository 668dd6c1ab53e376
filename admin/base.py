"""What every admin view shares: login required, owner-only pages, and shop scoping.

Scoping is the panel's security boundary: a staff member sees and changes only their own
shop's rows. ``ShopModelView`` filters the list, count and single-row queries by the
staff's shop, answers 404 for anything else (never "does not exist" with a redirect,
which would confirm nothing but is harder to test), forces ``shop_id`` on create and edit,
and resolves action ids through the same scoped query.
"""

from __future__ import annotations

from datetime import datetime

from flask import abort, flash, redirect, request, url_for
from flask_admin import expose
from flask_admin.actions import action
from flask_admin.contrib.sqla import ModelView
from flask_admin.contrib.sqla.typefmt import DEFAULT_FORMATTERS
from flask_login import current_user
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from admin.display import datetime_type_formatter
from recovery.db import db


class StaffOnly:
    """Mixin: only for logged-in staff; others go to the login page."""

    def is_accessible(self) -> bool:
        return current_user.is_authenticated

    def inaccessible_callback(self, name, **kwargs):
        if current_user.is_authenticated:
            abort(403)
        return redirect(url_for("auth.login", next=request.full_path))


class OwnerOnly(StaffOnly):
    """Mixin: shop settings and staff accounts are for the shop's owner."""

    def is_accessible(self) -> bool:
        return current_user.is_authenticated and current_user.is_owner

    def is_visible(self) -> bool:
        return self.is_accessible()


# Primary keys are PostgreSQL ``integer``: a larger number can name no row, and binding it
# would be a DataError, not a "not found".
MAX_ID = 2**31 - 1


def parse_id(raw) -> int:
    """A row id from a request, or 404: anything that cannot be an id finds nothing."""
    try:
        ident = int(raw)
    except (TypeError, ValueError):
        abort(404)
    if not 1 <= ident <= MAX_ID:
        abort(404)
    return ident


def shop_rows(model, order_by=None):
    """A ``query_factory`` for select fields: only the staff's shop's rows."""

    def factory():
        query = select(model).where(model.shop_id == current_user.shop_id)
        return db.session.scalars(query.order_by(order_by or model.id)).all()

    return factory


class ShopModelView(StaffOnly, ModelView):
    can_export = False
    can_set_page_size = False
    can_view_details = True
    page_size = 25
    column_display_actions = True
    column_type_formatters = {**DEFAULT_FORMATTERS, datetime: datetime_type_formatter}
    column_type_formatters_detail = column_type_formatters
    # Flask-Admin's default is a flash and a 302 for a missing row; a row of another shop
    # must be indistinguishable from a missing one, so get_one answers 404 for both.

    def __init__(self, model, **kwargs):
        # Pass the extension, not its session: Flask-Admin then reads ``db.session`` at
        # use time (the tests swap it for one bound to a rolled-back transaction).
        super().__init__(model, db, **kwargs)

    # ---------------------------------------------------------------- scoping

    def scope(self, query):
        """Restrict a query on this view's model to the staff's shop."""
        return query.filter(self.model.shop_id == current_user.shop_id)

    def get_query(self):
        return self.scope(super().get_query())

    def get_count_query(self):
        return self.scope(db.session.query(func.count(self.model.id)).select_from(self.model))

    def get_list(self, page, *args, **kwargs):
        # ``?page=`` is turned into an OFFSET: a negative or huge one is a DataError.
        if page is not None and not 0 <= page <= MAX_ID // self.page_size:
            abort(404)
        return super().get_list(page, *args, **kwargs)

    def get_one(self, id):
        row = self.get_query().filter(self.model.id == parse_id(id)).one_or_none()
        if row is None:
            abort(404)
        return row

    def scoped_rows(self, ids) -> list:
        """The rows an action was asked to act on; 404 if any is not this shop's."""
        wanted = {parse_id(i) for i in ids}
        rows = self.get_query().filter(self.model.id.in_(wanted)).order_by(self.model.id).all()
        if len(rows) != len(wanted):
            abort(404)
        return rows

    # Flask-Admin checks can_edit / can_delete before it looks the row up. Look it up first,
    # so another shop's row is a 404 on every endpoint, whatever the view allows.

    @expose("/edit/", methods=("GET", "POST"))
    def edit_view(self):
        self.get_one(request.args.get("id"))
        return super().edit_view()

    @expose("/details/")
    def details_view(self):
        self.get_one(request.args.get("id"))
        return super().details_view()

    @expose("/delete/", methods=("POST",))
    def delete_view(self):
        self.get_one(request.form.get("id"))
        return super().delete_view()

    # Flask-Admin's own bulk delete binds the ids as strings (PostgreSQL refuses to compare
    # them with an integer column) and skips ``scoped_rows``: this one resolves them like
    # every other action (404 if any is not this shop's) and deletes each through
    # ``delete_model``, so on_model_delete and the "still in use" message apply.
    @action("delete", "Delete", "Delete the selected records?")
    def action_delete(self, ids):
        deleted = sum(1 for row in self.scoped_rows(ids) if self.delete_model(row))
        if deleted:
            noun = "record was" if deleted == 1 else "records were"
            flash(f"{deleted} {noun} deleted.", "success")

    def on_model_change(self, form, model, is_created):
        if hasattr(model, "shop_id"):
            model.shop_id = current_user.shop_id

    # ---------------------------------------------------------------- errors

    # Constraint names mapped to what staff should read instead of the database's words.
    integrity_messages: dict[str, str] = {}
    # What a refused delete (the row is still referenced) tells staff.
    in_use_message = "It is still in use by other records, so it was kept."

    def handle_view_exception(self, exc):
        if isinstance(exc, IntegrityError):
            text = str(exc.orig)
            if "foreign key" in text.lower():  # PostgreSQL and SQLite both say so
                flash(f"Cannot delete. {self.in_use_message}", "error")
                return True
            for constraint, message in self.integrity_messages.items():
                if constraint in text:
                    flash(message, "error")
                    return True
        return super().handle_view_exception(exc)
