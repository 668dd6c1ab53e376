"""Admin views. Every view requires a logged-in staff member."""

from __future__ import annotations

from flask import redirect, request, url_for
from flask_admin import AdminIndexView, expose
from flask_login import current_user


class StaffOnly:
    """Mixin: the view is only for logged-in staff; others go to the login page."""

    def is_accessible(self) -> bool:
        return current_user.is_authenticated

    def inaccessible_callback(self, name, **kwargs):
        return redirect(url_for("auth.login", next=request.full_path))


class HomeView(StaffOnly, AdminIndexView):
    @expose("/")
    def index(self):
        return self.render("admin/home.html", shop=current_user.shop)
