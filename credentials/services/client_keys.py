"""Client keys: creation, rotation, lifetime totals reset, the system key of config.json."""

from __future__ import annotations

import secrets
import string

from django.db import transaction
from django.utils import timezone

from credentials.limits import KeyTotals, totals_of
from credentials.models import (
    ClientKey,
    ClientKeyWindow,
    CredentialGroup,
    GatewaySettings,
    LimitWindowKind,
    sha256_hex,
)

_BASE62 = string.ascii_letters + string.digits

SYSTEM_KEY_NAME = "System key (config.json apiKey)"


# --- client keys ------------------------------------------------------------------------


def client_key_generate() -> str:
    """Return a new client key: `sk-` plus 32 base62 characters (spec kiro-ops §4.2)."""
    return "sk-" + "".join(secrets.choice(_BASE62) for _ in range(32))


def client_key_prefix(plaintext: str) -> str:
    """Return the part of a key shown in lists: its first 8 characters."""
    return plaintext[:8]


def client_key_create(
    *,
    name: str,
    description: str = "",
    group: CredentialGroup | None = None,
    plaintext: str | None = None,
) -> tuple[ClientKey, str]:
    """Create a client key and return it with its plaintext, which is never stored."""
    plaintext = plaintext or client_key_generate()
    key = ClientKey.objects.create(
        name=name,
        description=description,
        group=group,
        prefix=client_key_prefix(plaintext),
        key_hash=sha256_hex(plaintext),
    )
    return key, plaintext


def client_key_rotate(*, key: ClientKey) -> str:
    """Give a key a new secret; the old one stops working at once. Return the plaintext."""
    plaintext = client_key_generate()
    key.prefix = client_key_prefix(plaintext)
    key.key_hash = sha256_hex(plaintext)
    key.save(update_fields=["prefix", "key_hash"])
    if key.is_system:
        settings_row = GatewaySettings.load()
        settings_row.api_key = plaintext  # spec kiro-ops feature 74: written back to apiKey
        settings_row.save(update_fields=["api_key", "updated_at"])
    return plaintext


def client_key_set_enabled(*, key_ids: list[int], enabled: bool) -> int:
    """Enable or disable client keys; return how many there were."""
    return ClientKey.objects.filter(pk__in=key_ids).update(enabled=enabled)


def client_key_reset_totals(*, key_ids: list[int]) -> dict[int, KeyTotals]:
    """Zero the lifetime totals of the keys (their month rows); return what each had.

    The current day and month are untouched: they are what the budgets count."""
    rows = ClientKeyWindow.objects.select_for_update().filter(
        client_key_id__in=key_ids, kind=LimitWindowKind.MONTH
    )
    with transaction.atomic():
        before = {row.client_key_id: totals_of(row) for row in rows}
        rows.update(
            total_requests=0,
            total_input_tokens=0,
            total_output_tokens=0,
            total_credits=0.0,
            totals_since=timezone.now(),
        )
    return {key_id: before.get(key_id, KeyTotals()) for key_id in key_ids}


def client_key_sync_system(*, plaintext: str) -> ClientKey:
    """Make `plaintext` the system key's secret (spec kiro-ops §4.2, config.json apiKey)."""
    digest = sha256_hex(plaintext)
    system = ClientKey.objects.filter(is_system=True).first()
    ClientKey.objects.filter(key_hash=digest).exclude(pk=getattr(system, "pk", None)).delete()
    if system is None:
        return ClientKey.objects.create(
            name=SYSTEM_KEY_NAME,
            description="Synced from config.json apiKey.",
            prefix=client_key_prefix(plaintext),
            key_hash=digest,
            is_system=True,
        )
    if system.key_hash != digest:
        # A changed value re-enables the key and keeps name, group and counters.
        system.key_hash = digest
        system.prefix = client_key_prefix(plaintext)
        system.enabled = True
        system.save(update_fields=["key_hash", "prefix", "enabled"])
    return system


# --- credentials: small state changes ----------------------------------------------------
