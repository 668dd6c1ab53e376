"""The public links customers get by SMS: the payment page and the booking's manage page.

Both carry an unguessable token; the base is ``PUBLIC_BASE_URL`` (what customers can
reach), or the local demo's address when none is set.
"""

from __future__ import annotations

import re

from flask import current_app

from recovery.models import Appointment, Payment

LOCAL_BASE_URL = "http://127.0.0.1:5000"

# The path segment after /pay/ or /b/ is a key to a customer's payment or booking.
_TOKEN_IN_PATH = re.compile(r"(/(?:pay|b)/)[^/?#\s]+")


def _base() -> str:
    return current_app.config.get("PUBLIC_BASE_URL") or LOCAL_BASE_URL


def pay_url(payment: Payment) -> str:
    return f"{_base()}/pay/{payment.token}"


def manage_url(appointment: Appointment) -> str:
    return f"{_base()}/b/{appointment.manage_token}"


def redact_tokens(text: str) -> str:
    """``text`` (a path, a request line) with the tokens of customer links replaced.

    Access logs go to log drains and people: they name the route, never the key."""
    return _TOKEN_IN_PATH.sub(r"\1<token>", text)
