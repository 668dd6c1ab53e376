"""The idempotency key of a staff refund: made by the server, never chosen by the form.

The refund form carries one key per form shown, so submitting it twice refunds once. The
key is made here when the form is rendered (``payments.refunds.new_idempotency_key``, a
``staff-`` key) and travels signed with ``SECRET_KEY`` (itsdangerous, as Flask signs its
session cookie; ``SECRET_KEY_FALLBACKS`` still verify), bound to the booking and the staff
member it was shown to. A key the server did not make, one made for another booking or
person, or one older than a day is refused: a posted form can never name a key of the
policy's own refunds (``cancel-<payment id>``) or of another form.
"""

from __future__ import annotations

from flask import current_app
from itsdangerous import BadSignature, URLSafeTimedSerializer

from recovery.payments.refunds import STAFF_KEY_PREFIX, new_idempotency_key

SALT = "slot-recovery.refund-form-key"
# Longer than a working day with the form left open; a staler form is opened again.
MAX_AGE_SECONDS = 24 * 3600


def _serializer() -> URLSafeTimedSerializer:
    config = current_app.config
    # itsdangerous signs with the last key and verifies with any of them.
    keys = [*(config.get("SECRET_KEY_FALLBACKS") or ()), config["SECRET_KEY"]]
    return URLSafeTimedSerializer(keys, salt=SALT)


def issue(appointment_id: int, staff_id: int) -> str:
    """A fresh key for one refund form, signed for this booking and staff member."""
    return _serializer().dumps(
        {"key": new_idempotency_key(), "appointment": appointment_id, "staff": staff_id}
    )


def verified(signed: str | None, appointment_id: int, staff_id: int) -> str | None:
    """The key inside a posted form's value if this server issued it for this booking
    and staff member within ``MAX_AGE_SECONDS``; else None."""
    if not signed:
        return None
    try:
        data = _serializer().loads(signed, max_age=MAX_AGE_SECONDS)
    except BadSignature:  # also a bad timestamp or an expired one
        return None
    if not isinstance(data, dict):
        return None
    key = data.get("key")
    if (
        not isinstance(key, str)
        or not key.startswith(STAFF_KEY_PREFIX)
        or data.get("appointment") != appointment_id
        or data.get("staff") != staff_id
    ):
        return None
    return key
