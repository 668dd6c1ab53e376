"""The password rule for staff accounts, applied wherever a person chooses one.

OWASP's Authentication cheat sheet (and NIST SP 800-63B): length is what makes a password
strong, so ask for at least 12 characters and allow long passphrases; refuse passwords
that attackers try first (a shipped list of common ones, and such a password with digits
or symbols stuck on); no rules about character classes, no forced rotation.

The rule guards the forms and the CLI, not ``StaffUser.set_password``: test factories and
the demo seed set passwords directly.
"""

from __future__ import annotations

import string
from functools import cache
from pathlib import Path

MIN_LENGTH = 12
# Long enough for any passphrase; bounds the work of hashing what a form posts.
MAX_LENGTH = 128

# Django's copy of Royce Williams' list of the 20,000 most common passwords (see
# common-passwords.LICENSE beside it).
COMMON_PASSWORDS_FILE = Path(__file__).parent / "data" / "common-passwords.txt"

# What people stick on a common word to pass a length rule: "Summer2024!!", "password1234".
PADDING = string.digits + string.punctuation + string.whitespace

# Runs people type for "random": any 12 characters in a row of these is refused.
SEQUENCES = (
    "01234567890123456789",
    "98765432109876543210",
    "abcdefghijklmnopqrstuvwxyz",
    "zyxwvutsrqponmlkjihgfedcba",
    "qwertyuiopasdfghjklzxcvbnm",
    "mnbvcxzlkjhgfdsapoiuytrewq",
)

TOO_SHORT = f"Use at least {MIN_LENGTH} characters: a few unrelated words make a good one."
TOO_LONG = f"Use at most {MAX_LENGTH} characters."
IS_EMAIL = "Do not use the email address (or its name part) as the password."
TOO_COMMON = "That password is too common: attackers try it first. Choose another."


@cache
def common_passwords() -> frozenset[str]:
    """The shipped list, lower-cased (read once per process)."""
    lines = COMMON_PASSWORDS_FILE.read_text(encoding="utf-8").splitlines()
    return frozenset(line.strip().lower() for line in lines if line.strip())


def _repeats_a_short_unit(password: str) -> bool:
    """One short piece, repeated: "aaaaaaaaaaaa", "abcabcabcabc", "12121212121212"."""
    for size in range(1, 5):
        unit = password[:size]
        if len(password) % size == 0 and unit * (len(password) // size) == password:
            return True
    return False


def is_common(password: str) -> bool:
    lowered = password.lower()
    if lowered in common_passwords() or _repeats_a_short_unit(lowered):
        return True
    if any(lowered in run for run in SEQUENCES):
        return True
    stem = lowered.strip(PADDING)
    return stem != lowered and stem in common_passwords()


def check_password_policy(password: str, email: str | None = None) -> str | None:
    """What is wrong with ``password`` for the account ``email``, or None if it is fine."""
    if len(password) < MIN_LENGTH:
        return TOO_SHORT
    if len(password) > MAX_LENGTH:
        return TOO_LONG
    if email:
        address = email.strip().lower()
        if password.strip().lower() in (address, address.split("@", 1)[0]):
            return IS_EMAIL
    if is_common(password):
        return TOO_COMMON
    return None
