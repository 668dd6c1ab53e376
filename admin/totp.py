"""Two-factor sign-in: TOTP secrets kept encrypted, codes that work once, recovery codes.

**The key.** The TOTP secret is encrypted with Fernet under a key derived (HKDF-SHA256,
its own ``info`` label) from the app's ``SECRET_KEY``, and from each of Flask's
``SECRET_KEY_FALLBACKS`` for reading only. Every deployment already has that key (the
embedded demo writes one under ``instance/``), so two-factor sign-in needs no new setting,
and the label keeps the derived key apart from the session-signing use of the same
secret. Rotation follows Flask's own: move the old ``SECRET_KEY`` into
``SECRET_KEY_FALLBACKS``; each user's secret is re-encrypted with the new key at their
next successful code. ``CALENDAR_TOKEN_KEYS`` was not reused: it is optional (calendar
sync is off without it), and two-factor sign-in must work everywhere.

**Replays.** A code is good for one use (RFC 6238, section 5.2). The schema has no column
for the last time step used, so it is kept inside the encrypted blob, next to the secret
(``<secret>|<step>``), and rewritten under the staff row's lock: two requests with the
same code cannot both pass, on any number of web processes, with or without Redis. A code
from the previous, current or next 30-second step is accepted (clock drift), but never one
from a step at or before the last one used.

**Recovery codes.** Ten random codes (50 bits each), shown once; only a scrypt hash of each
is stored. Each one signs in once.
"""

from __future__ import annotations

import base64
import hmac
import re
import secrets

import pyotp
import qrcode
import qrcode.image.svg
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import current_app
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from recovery.audit import AuditAction, record
from recovery.availability.calendars.secrets import InvalidToken, SecretBox
from recovery.db import lock_row, utcnow
from recovery.models import RecoveryCode, StaffUser

ISSUER = "Slot Recovery"
RECOVERY_CODE_COUNT = 10
# Recovery codes are random (50 bits) and attempts are throttled, so a lighter scrypt than
# werkzeug's default for passwords keeps a check of all ten under half a second.
RECOVERY_HASH_METHOD = "scrypt:16384:8:1"
_HKDF_INFO = b"slot-recovery: two-factor secrets, v1"
_TOTP_CODE = re.compile(r"^\d{6}$")


# ---------------------------------------------------------------- the secret at rest


def _derived_key(secret_key: str | bytes) -> str:
    raw = secret_key.encode() if isinstance(secret_key, str) else secret_key
    hkdf = HKDF(algorithm=SHA256(), length=32, salt=None, info=_HKDF_INFO)
    return base64.urlsafe_b64encode(hkdf.derive(raw)).decode()


def _box() -> SecretBox:
    """The current key first (it encrypts), then the fallbacks (they only decrypt)."""
    config = current_app.config
    keys = [config["SECRET_KEY"], *(config.get("SECRET_KEY_FALLBACKS") or ())]
    return SecretBox([_derived_key(key) for key in keys])


def _seal(secret: str, last_step: int) -> bytes:
    return _box().encrypt(f"{secret}|{last_step}")


def _open(blob: bytes) -> tuple[str, int]:
    secret, _, step = _box().decrypt(blob).partition("|")
    return secret, int(step or 0)


# ---------------------------------------------------------------- enrolment


def is_enabled(user: StaffUser) -> bool:
    return user.totp_enabled_at is not None and user.totp_secret is not None


def needs_enrolment(user: StaffUser) -> bool:
    """The shop requires two-factor sign-in and this user has not set it up yet."""
    return bool(user.shop.require_two_factor) and not is_enabled(user)


def pending_secret(user: StaffUser) -> str:
    """The secret being enrolled: the one already started (so reloading the page keeps
    the same QR code), or a new one (160 bits, as RFC 4226 recommends)."""
    if is_enabled(user):
        raise ValueError("two-factor sign-in is already on")
    if user.totp_secret is not None:
        try:
            return _open(user.totp_secret)[0]
        except InvalidToken:
            pass  # sealed under a key since dropped: start again
    secret = pyotp.random_base32(length=32)
    user.totp_secret = _seal(secret, 0)
    return secret


def provisioning_uri(user: StaffUser, secret: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=user.email, issuer_name=ISSUER)


def qr_svg(data: str) -> str:
    """``data`` as a QR code, an ``<svg>`` element to put straight into the page (drawn
    here: the secret never goes to a QR service)."""
    code = qrcode.QRCode(
        error_correction=qrcode.constants.ERROR_CORRECT_M,
        border=4,
        image_factory=qrcode.image.svg.SvgPathImage,
    )
    code.add_data(data)
    code.make(fit=True)
    svg = code.make_image().to_string(encoding="unicode")
    # The library sizes it in millimetres (small on screen): a fixed size in pixels that
    # phone cameras read easily, with the viewBox scaling the modules.
    svg = re.sub(r'width="[^"]*" height="[^"]*"', 'width="240" height="240"', svg, count=1)
    return svg.replace(
        "<svg ", '<svg role="img" aria-label="QR code for your authenticator app" ', 1
    )


def confirm_enrolment(session: Session, user: StaffUser, code: str) -> list[str] | None:
    """Turn two-factor sign-in on if ``code`` is right for the pending secret; then the
    recovery codes to show once. None (and nothing changed) for a wrong code."""
    locked = lock_row(session, StaffUser, user.id)
    if is_enabled(locked) or locked.totp_secret is None:
        return None
    if not _accept_totp(locked, code):
        return None
    locked.totp_enabled_at = utcnow()
    codes = _issue_recovery_codes(session, locked)
    record(
        session,
        locked,
        AuditAction.TWO_FACTOR_CHANGED,
        locked,
        before={"two_factor": False},
        after={"two_factor": True},
        note="enrolled",
    )
    return codes


def turn_off(session: Session, actor: StaffUser, user: StaffUser, note: str) -> None:
    """Remove the secret and every recovery code: the user's own choice, or the owner's
    reset (a lost phone). Audited either way."""
    locked = lock_row(session, StaffUser, user.id)
    was_on = is_enabled(locked)
    locked.totp_secret = None
    locked.totp_enabled_at = None
    session.execute(delete(RecoveryCode).where(RecoveryCode.staff_id == locked.id))
    record(
        session,
        actor,
        AuditAction.TWO_FACTOR_CHANGED,
        locked,
        before={"two_factor": was_on},
        after={"two_factor": False},
        note=note,
    )


# ---------------------------------------------------------------- codes


def _normalise(code: str) -> str:
    return re.sub(r"[\s-]", "", code or "").lower()


def _matching_step(secret: str, code: str) -> int | None:
    """The time step (previous, current or next) whose code is ``code``."""
    totp = pyotp.TOTP(secret)
    now_step = totp.timecode(utcnow())
    for step in (now_step - 1, now_step, now_step + 1):
        if hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None


def _accept_totp(locked: StaffUser, code: str) -> bool:
    """Check a code against a locked row's secret; on success remember its step."""
    code = _normalise(code)
    if not _TOTP_CODE.match(code) or locked.totp_secret is None:
        return False
    try:
        secret, last_step = _open(locked.totp_secret)
    except InvalidToken:
        current_app.logger.error("two-factor secret of staff %s cannot be decrypted", locked.id)
        return False
    step = _matching_step(secret, code)
    if step is None or step <= last_step:
        return False
    # Also re-encrypts with the current key after a SECRET_KEY rotation.
    locked.totp_secret = _seal(secret, step)
    return True


def verify_totp(session: Session, user: StaffUser, code: str) -> bool:
    """A current authenticator code, never used before. Locks the staff row."""
    locked = lock_row(session, StaffUser, user.id)
    return is_enabled(locked) and _accept_totp(locked, code)


def use_recovery_code(session: Session, user: StaffUser, code: str) -> bool:
    """Spend one recovery code (marked used: it never works again). Locks the staff row,
    so the same code cannot be spent twice at once."""
    locked = lock_row(session, StaffUser, user.id)
    code = _normalise(code)
    if not is_enabled(locked) or not code:
        return False
    unused = session.scalars(
        select(RecoveryCode)
        .where(RecoveryCode.staff_id == locked.id, RecoveryCode.used_at.is_(None))
        .order_by(RecoveryCode.id)
    ).all()
    for row in unused:
        if check_password_hash(row.code_hash, code):
            row.used_at = utcnow()
            left = len(unused) - 1
            record(
                session,
                locked,
                AuditAction.TWO_FACTOR_CHANGED,
                locked,
                note=f"signed in with a recovery code; {left} left",
            )
            return True
    return False


def looks_like_totp(code: str) -> bool:
    """Six digits: an authenticator code; anything else is taken for a recovery code."""
    return bool(_TOTP_CODE.match(_normalise(code)))


def check_second_factor(session: Session, user: StaffUser, code: str) -> bool:
    """The sign-in step: an authenticator code or a recovery code."""
    if looks_like_totp(code):
        return verify_totp(session, user, code)
    return use_recovery_code(session, user, code)


def recovery_codes_left(session: Session, user: StaffUser) -> int:
    query = select(func.count(RecoveryCode.id)).where(
        RecoveryCode.staff_id == user.id, RecoveryCode.used_at.is_(None)
    )
    return session.scalar(query) or 0


def _new_recovery_code() -> str:
    alphabet = "abcdefghijkmnpqrstuvwxyz23456789"  # 32 symbols, none easily misread
    raw = "".join(secrets.choice(alphabet) for _ in range(10))
    return f"{raw[:5]}-{raw[5:]}"


def _issue_recovery_codes(session: Session, user: StaffUser) -> list[str]:
    """A fresh set: the old codes, used or not, stop working."""
    session.execute(delete(RecoveryCode).where(RecoveryCode.staff_id == user.id))
    codes = [_new_recovery_code() for _ in range(RECOVERY_CODE_COUNT)]
    now = utcnow()
    session.add_all(
        RecoveryCode(
            staff_id=user.id,
            code_hash=generate_password_hash(_normalise(code), method=RECOVERY_HASH_METHOD),
            created_at=now,
        )
        for code in codes
    )
    return codes


def regenerate_recovery_codes(session: Session, user: StaffUser) -> list[str]:
    locked = lock_row(session, StaffUser, user.id)
    if not is_enabled(locked):
        raise ValueError("two-factor sign-in is off")
    codes = _issue_recovery_codes(session, locked)
    record(session, locked, AuditAction.TWO_FACTOR_CHANGED, locked, note="new recovery codes")
    return codes


def format_secret(secret: str) -> str:
    """Groups of four, for typing into an app by hand."""
    return " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))
