"""Calendar secrets (refresh tokens, feed URLs) encrypted at rest with Fernet.

``CALENDAR_TOKEN_KEYS`` is a comma-separated list of Fernet keys: the first encrypts,
all of them decrypt (``MultiFernet``). To rotate, put a new key first, run
``flask calendar rotate-keys`` (re-encrypts every stored secret with it), then drop the
old key.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

__all__ = ["InvalidToken", "SecretBox", "box_from_config"]


class SecretBox:
    def __init__(self, keys: Sequence[str]) -> None:
        if not keys:
            raise ValueError("CALENDAR_TOKEN_KEYS is empty: no key to encrypt with")
        self._fernet = MultiFernet([Fernet(key.encode()) for key in keys])

    def encrypt(self, plain: str) -> bytes:
        return self._fernet.encrypt(plain.encode())

    def decrypt(self, token: bytes) -> str:
        """Raises ``InvalidToken`` when no configured key opens it."""
        return self._fernet.decrypt(bytes(token)).decode()

    def rotate(self, token: bytes) -> bytes:
        """The same secret, encrypted with the current (first) key."""
        return self._fernet.rotate(bytes(token))


def box_from_config(config: Mapping) -> SecretBox | None:
    """None when no keys are configured: calendar sync is then off."""
    keys = config.get("CALENDAR_TOKEN_KEYS") or ()
    return SecretBox(keys) if keys else None
