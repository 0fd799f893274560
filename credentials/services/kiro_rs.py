"""kiro-rs files: the import plan and its application, and the export (kiro-ops §1, §2)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.core.management.color import no_style
from django.db import connection, transaction
from django.db.models import Max

from credentials import kiro_config, kiro_files
from credentials.models import (
    Credential,
    GatewaySettings,
    sha256_hex,
)
from credentials.services.client_keys import client_key_sync_system
from credentials.services.pool import groups_ensure


@dataclass(slots=True)
class ImportPlanItem:
    index: int
    credential_id: int | None
    action: str  # "create" | "update"
    auth_method: str
    label: str
    enabled: bool
    rules: list[str]


@dataclass(slots=True)
class ImportPlan:
    """What an import would do; built without writing anything."""

    settings_values: dict[str, Any] | None
    credentials: list[kiro_files.ParsedCredential]
    items: list[ImportPlanItem]
    single_object: bool
    system_key: bool
    warnings: list[str] = field(default_factory=list)

    @property
    def created(self) -> int:
        return sum(1 for item in self.items if item.action == "create")

    @property
    def updated(self) -> int:
        return sum(1 for item in self.items if item.action == "update")


def kiro_import_plan(
    *,
    config_text: str | None,
    credentials_text: str | None,
    config_name: str = "config.json",
    credentials_name: str = "credentials.json",
) -> ImportPlan:
    """Parse both files and decide, per entry, create or update. Raises KiroFileError."""
    settings_values = (
        kiro_config.parse_config(config_text, config_name) if config_text is not None else None
    )
    parsed, single = (
        kiro_files.parse_credentials(credentials_text, credentials_name)
        if credentials_text is not None
        else ([], False)
    )
    existing_ids = set(Credential.objects.values_list("pk", flat=True))
    by_refresh = dict(
        Credential.objects.exclude(refresh_token_hash="").values_list("refresh_token_hash", "pk")
    )
    by_api_key = dict(
        Credential.objects.exclude(kiro_api_key_hash="").values_list("kiro_api_key_hash", "pk")
    )
    next_id = max([*existing_ids, *(p.values.get("id") or 0 for p in parsed), 0]) + 1
    items: list[ImportPlanItem] = []
    claimed: set[int] = set()
    for entry in parsed:
        ident = entry.values.get("id")
        if ident is None:
            # spec kiro-ops §2.4: ids come from max+1; re-import matches by token instead.
            refresh = entry.values.get("refresh_token")
            api_key = entry.values.get("kiro_api_key")
            match = (refresh and by_refresh.get(sha256_hex(refresh))) or (
                api_key and by_api_key.get(sha256_hex(api_key))
            )
            if match and match not in claimed:
                ident = match
            else:
                ident = next_id
                next_id += 1
                entry.rules.append("id_assigned")
            entry.values["id"] = ident
        claimed.add(ident)
        items.append(
            ImportPlanItem(
                index=entry.index,
                credential_id=ident,
                action="update" if ident in existing_ids else "create",
                auth_method=entry.values["auth_method"],
                label=entry.values.get("email") or entry.values.get("provider") or "",
                enabled=entry.values["enabled"],
                rules=list(entry.rules),
            )
        )
    return ImportPlan(
        settings_values=settings_values,
        credentials=parsed,
        items=items,
        single_object=single,
        system_key=bool(settings_values and settings_values.get("api_key", "").strip()),
    )


# Model fields an import may set, with the value an absent key leaves behind.
IMPORTED_DEFAULTS: dict[str, Any] = {
    key.attr: (0 if key.kind == "int" else None if key.kind == "time" else "")
    for key in kiro_files.CREDENTIAL_KEYS
    if key.kind not in ("groups", "disabled") and key.attr != "id"
}


@transaction.atomic
def kiro_import_apply(*, plan: ImportPlan) -> ImportPlan:
    """Write a planned import in one transaction: settings, system key, credentials."""
    if plan.settings_values is not None:
        settings_row = GatewaySettings.load()
        for attr, value in plan.settings_values.items():
            setattr(settings_row, attr, value)
        settings_row.save()
        if plan.system_key:
            client_key_sync_system(plaintext=plan.settings_values["api_key"].strip())

    groups = groups_ensure(names=[g for entry in plan.credentials for g in entry.groups])
    for entry in plan.credentials:
        ident = entry.values["id"]
        credential = Credential.objects.filter(pk=ident).first() or Credential(pk=ident)
        for attr, default in IMPORTED_DEFAULTS.items():
            value = entry.values.get(attr)
            setattr(credential, attr, default if value is None else value)
        credential.set_refresh_token(credential.refresh_token)
        credential.set_kiro_api_key(credential.kiro_api_key)
        credential.enabled = entry.values["enabled"]
        credential.disabled_reason = entry.values.get("disabled_reason") or ""
        credential.kiro_extra = entry.kiro_extra
        credential.save()
        credential.groups.set([groups[name] for name in entry.groups])
    reset_id_sequences()
    return plan


def reset_id_sequences() -> None:
    """Move Postgres' id sequence past imported explicit ids (SQLite needs nothing)."""
    statements = connection.ops.sequence_reset_sql(no_style(), [Credential])
    if statements:
        with connection.cursor() as cursor:
            for sql in statements:
                cursor.execute(sql)


# --- kiro-rs export ----------------------------------------------------------------------


def kiro_export_credentials(*, credential_ids: Iterable[int] | None = None) -> list[dict]:
    """Return credentials.json entries (array form, ordered by priority then id)."""
    queryset = Credential.objects.prefetch_related("groups").order_by("priority", "pk")
    if credential_ids is not None:
        queryset = queryset.filter(pk__in=list(credential_ids))
    entries = []
    for credential in queryset:
        values = {
            key.attr: getattr(credential, key.attr)
            for key in kiro_files.CREDENTIAL_KEYS
            if key.kind != "groups"
        }
        values["id"] = credential.pk
        if credential.enabled:
            values["disabled_reason"] = ""
        groups = [g.name for g in credential.groups.all()]
        entries.append(kiro_files.render_credential(values, groups, credential.kiro_extra or {}))
    return entries


def kiro_export_config() -> dict:
    """Return config.json as kiro-rs writes it, secrets included (explicit export only)."""
    settings_row = GatewaySettings.load()
    values = {key.attr: getattr(settings_row, key.attr) for key in kiro_config.CONFIG_KEYS}
    values["kiro_extra"] = settings_row.kiro_extra
    return kiro_config.render_config(values)


def next_credential_id() -> int:
    """Return the id a new credential would get (max + 1), for forms that preview it."""
    return (Credential.objects.aggregate(top=Max("pk"))["top"] or 0) + 1


# --- pool bookkeeping (spec kiro-ops §3.5–§3.9) -------------------------------------------
