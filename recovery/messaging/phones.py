"""Phone numbers: parsed and validated by ``phonenumbers``, stored as E.164."""

from __future__ import annotations

import phonenumbers


class InvalidPhone(ValueError):
    """A number that cannot be texted; the message says why, for the person who typed it."""


def normalize_phone(raw: str, default_region: str = "GB") -> str:
    """Return ``raw`` in E.164 (``+447700900123``) or raise ``InvalidPhone``.

    ``default_region`` reads national numbers (``07700 900123``) in the shop's country.
    """
    text = (raw or "").strip()
    if not text:
        raise InvalidPhone("Phone number is empty.")
    try:
        parsed = phonenumbers.parse(text, default_region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidPhone(f"{text!r} is not a phone number ({exc._msg}).") from None
    if not phonenumbers.is_valid_number(parsed):
        raise InvalidPhone(f"{text!r} is not a valid phone number.")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def region_for_locale(locale: str) -> str:
    """``en_GB`` -> ``GB``; the region national numbers are read in."""
    _, _, region = locale.partition("_")
    return region.upper() or "GB"
