"""Encryption at rest for tokens and secrets (Fernet: AES-128-CBC + HMAC-SHA256).

Keys come from `KIRO_ENCRYPTION_KEYS` (comma-separated Fernet keys, newest first) or, when
that is empty, one key derived from SECRET_KEY with HKDF. Rotation: put the new key first,
keep the old ones after it, run `manage.py rotate_encryption`, then drop the old keys.
"""

from __future__ import annotations

import base64
import functools

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models

_PREFIX = "fernet:"


class DecryptionError(RuntimeError):
    """A stored secret cannot be read with any configured key."""


def derive_key(secret_key: str) -> bytes:
    """Derive a Fernet key from the Django secret key (stable across restarts)."""
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"kiro-gateway", info=b"secrets-at-rest")
    return base64.urlsafe_b64encode(hkdf.derive(secret_key.encode()))


@functools.lru_cache(maxsize=8)
def _multi_fernet(keys: tuple[str, ...], secret_key: str) -> MultiFernet:
    raw = [k.strip().encode() for k in keys if k.strip()] or [derive_key(secret_key)]
    try:
        return MultiFernet([Fernet(k) for k in raw])
    except ValueError as exc:
        raise ImproperlyConfigured(
            "KIRO_ENCRYPTION_KEYS must hold url-safe base64 Fernet keys of 32 bytes "
            "(generate one with `manage.py rotate_encryption --new-key`)."
        ) from exc


def cipher() -> MultiFernet:
    """Return the cipher for the keys configured now (read at call time)."""
    return _multi_fernet(tuple(settings.KIRO_ENCRYPTION_KEYS), settings.SECRET_KEY)


def encrypt(value: str) -> str:
    """Encrypt a secret for storage."""
    return _PREFIX + cipher().encrypt(value.encode()).decode()


def decrypt(stored: str) -> str:
    """Decrypt a stored secret."""
    if not stored.startswith(_PREFIX):
        raise DecryptionError("stored value is not an encrypted secret")
    try:
        return cipher().decrypt(stored[len(_PREFIX) :].encode()).decode()
    except InvalidToken as exc:
        raise DecryptionError(
            "a stored secret cannot be decrypted with KIRO_ENCRYPTION_KEYS / SECRET_KEY; "
            "was the key changed without rotation?"
        ) from exc


def rotate(stored: str) -> str:
    """Re-encrypt a stored secret with the newest key."""
    return _PREFIX + cipher().rotate(stored[len(_PREFIX) :].encode()).decode()


def new_key() -> str:
    """Generate a fresh Fernet key for KIRO_ENCRYPTION_KEYS."""
    return Fernet.generate_key().decode()


class EncryptedTextField(models.TextField):
    """A text column whose value is stored encrypted; empty stays empty (no secret)."""

    def from_db_value(self, value: str | None, expression: object, connection: object) -> str:
        if not value:
            return ""
        return decrypt(value)

    def get_prep_value(self, value: object) -> str:
        value = super().get_prep_value(value)
        if not value:
            return ""
        return encrypt(str(value))
