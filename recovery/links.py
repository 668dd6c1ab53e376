"""The public links customers get by SMS: the payment page and the booking's manage page.

Both carry an unguessable token; the base is ``PUBLIC_BASE_URL`` (what customers can
reach), or the local demo's address when none is set.
"""

from __future__ import annotations

from flask import current_app

from recovery.models import Appointment, Payment

LOCAL_BASE_URL = "http://127.0.0.1:5000"


def _base() -> str:
    return current_app.config.get("PUBLIC_BASE_URL") or LOCAL_BASE_URL


def pay_url(payment: Payment) -> str:
    return f"{_base()}/pay/{payment.token}"


def manage_url(appointment: Appointment) -> str:
    return f"{_base()}/b/{appointment.manage_token}"
