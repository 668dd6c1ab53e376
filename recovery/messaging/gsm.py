"""GSM-7: which texts fit the SMS default alphabet, and how many segments they take.

https://www.twilio.com/docs/glossary/what-is-gsm-7-character-encoding
"""

from __future__ import annotations

BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
EXTENSION = "^{}\\[~]|€\f"  # each costs two characters (escape + char)
_BASIC = frozenset(BASIC)
_EXTENSION = frozenset(EXTENSION)

# Characters that locales and editors produce but GSM-7 lacks, and their plain twins.
_REPLACEMENTS = str.maketrans(
    {
        "\u00a0": " ",  # no-break space (e.g. "20 €" in de_DE)
        "\u202f": " ",  # narrow no-break space (e.g. "10:30 AM" in en_US)
        "\u2009": " ",
        "\u2018": "'",
        "\u2019": "'",
        "\u201c": '"',
        "\u201d": '"',
        "\u2013": "-",
        "\u2014": "-",
        "\u2026": "...",
        "\uffe5": "¥",
    }
)


def to_gsm7(text: str) -> str:
    """Replace look-alike characters so a text stays in GSM-7 where it can."""
    return text.translate(_REPLACEMENTS)


def is_gsm7(text: str) -> bool:
    return all(ch in _BASIC or ch in _EXTENSION for ch in text)


def septets(text: str) -> int:
    return sum(2 if ch in _EXTENSION else 1 for ch in text)


def segments(text: str) -> int:
    """SMS segments: 160/153 septets for GSM-7, 70/67 characters for UCS-2."""
    if is_gsm7(text):
        length, single, multi = septets(text), 160, 153
    else:
        length, single, multi = len(text), 70, 67
    if length <= single:
        return 1
    return -(-length // multi)
