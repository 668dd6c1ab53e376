"""The staff admin panel: Flask-Admin views behind Flask-Login, scoped to the staff's shop."""

from __future__ import annotations

from flask import Flask
from flask_admin import Admin
from flask_admin.theme import Bootstrap4Theme

from admin.auth import init_auth
from admin.views import HomeView


def init_admin(app: Flask) -> Admin:
    """Build a fresh ``Admin`` for this app (never share one between apps)."""
    init_auth(app)
    admin = Admin(
        app,
        name="Slot Recovery",
        url="/admin",
        index_view=HomeView(name="Dashboard", url="/admin", endpoint="admin"),
        theme=Bootstrap4Theme(swatch="default", base_template="admin/slot_base.html"),
    )
    return admin
