"""The staff admin panel: Flask-Admin views behind Flask-Login, scoped to the staff's shop."""

from __future__ import annotations

from flask import Flask, request
from flask_admin import Admin
from flask_admin.menu import MenuLink
from flask_admin.theme import Bootstrap4Theme

from admin.appointments import AppointmentView
from admin.audit import AuditView
from admin.auth import init_auth
from admin.blocks import BusyBlockView
from admin.calendar import CalendarView
from admin.catalog import ResourceView, ServiceView
from admin.customers import CustomerView
from admin.messages import MessageView
from admin.openings import OfferView, OpeningView
from admin.payments import PaymentView
from admin.sandbox import SandboxView
from admin.settings import ShopSettingsView
from admin.staff import StaffView
from admin.two_factor import init_two_factor
from admin.views import HomeView
from recovery.http.security import csp_nonce
from recovery.models import (
    Appointment,
    AuditEvent,
    BusyBlock,
    Customer,
    Message,
    Payment,
    Resource,
    Service,
    Shop,
    SlotOffer,
    SlotOpening,
    StaffUser,
)

NUL_REFUSED = "NUL characters are not allowed."


def _refuse_nul_characters():
    """PostgreSQL text cannot hold NUL (a DataError, a 500): refuse it at the door.

    Covers the query string (search, filters, dates) and form fields (names, texts); an
    uploaded file's contents are checked where the file is read.
    """
    if request.path != "/admin" and not request.path.startswith("/admin/"):
        return None
    fields = [request.args]
    if request.method == "POST":
        fields.append(request.form)
    for multi in fields:
        for key, values in multi.lists():
            if "\x00" in key or any("\x00" in value for value in values):
                return NUL_REFUSED, 400, {"Content-Type": "text/plain; charset=utf-8"}
    return None


def init_admin(app: Flask) -> Admin:
    """Build a fresh ``Admin`` for this app (never share one between apps)."""
    init_auth(app)
    init_two_factor(app)
    app.before_request(_refuse_nul_characters)
    admin = Admin(
        app,
        name="Slot Recovery",
        url="/admin",
        index_view=HomeView(name="Dashboard", url="/admin", endpoint="admin"),
        theme=Bootstrap4Theme(swatch="default", base_template="admin/slot_base.html"),
        # Flask-Admin puts this request's nonce on its <script> tags (recovery/http/security.py).
        csp_nonce_generator=csp_nonce,
    )
    # Endpoints are fixed names: templates and tests link to them.
    admin.add_view(CalendarView(name="Calendar", endpoint="calendar", url="/admin/calendar"))
    admin.add_view(OpeningView(SlotOpening, name="Openings", endpoint="openings"))
    admin.add_view(OfferView(SlotOffer, name="Offers", endpoint="offers"))
    admin.add_view(AppointmentView(Appointment, name="Appointments", endpoint="appointments"))
    admin.add_view(CustomerView(Customer, name="Customers", endpoint="customers"))
    admin.add_view(MessageView(Message, name="Messages", endpoint="messages"))
    admin.add_view(PaymentView(Payment, name="Payments", endpoint="payments"))
    admin.add_view(ServiceView(Service, name="Services", endpoint="services", category="Shop"))
    admin.add_view(ResourceView(Resource, name="Resources", endpoint="resources", category="Shop"))
    admin.add_view(BusyBlockView(BusyBlock, name="Busy time", endpoint="blocks", category="Shop"))
    admin.add_view(
        ShopSettingsView(Shop, name="Settings", endpoint="shop_settings", category="Shop")
    )
    admin.add_view(StaffView(StaffUser, name="Staff", endpoint="staff", category="Shop"))
    admin.add_view(AuditView(AuditEvent, name="Audit trail", endpoint="audit", category="Shop"))
    admin.add_view(SandboxView(name="Sandbox", endpoint="sandbox", url="/admin/sandbox"))
    # Each staff member's own page (outside /admin, so reachable before enrolment).
    admin.add_link(MenuLink(name="Two-factor sign-in", endpoint="two_factor.manage"))
    return admin
