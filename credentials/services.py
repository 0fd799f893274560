"""Writes to credentials, client keys and settings: the only module that changes these rows."""

from __future__ import annotations

import functools
import secrets
import string
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.core.management.color import no_style
from django.db import connection, transaction
from django.db.models import F, Max, Q
from django.utils import timezone

from credentials import batch_import, kiro_files, selectors
from credentials.models import (
    ClientKey,
    Credential,
    CredentialGroup,
    DisabledReason,
    GatewaySettings,
    JobLock,
    ProxyEntry,
    ProxyHealth,
    mask_proxy_url,
    sha256_hex,
)
from kiro_site import fastsql

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


def credential_enable(*, credential_ids: Iterable[int]) -> int:
    """Enable credentials, clearing reason, failure counters and cooldown (spec §2.6)."""
    return (
        Credential.objects.filter(pk__in=list(credential_ids))
        .exclude(disabled_reason=DisabledReason.INVALID_CONFIG)
        .update(
            enabled=True,
            disabled_reason="",
            failure_count=0,
            refresh_failure_count=0,
            cooldown_until=None,
            self_heal_rounds=0,
            last_self_heal_at=None,
            self_heal_model="",
            updated_at=timezone.now(),
        )
    )


def credential_disable(*, credential_ids: Iterable[int]) -> int:
    """Disable credentials by hand (reason Manual)."""
    return Credential.objects.filter(pk__in=list(credential_ids), enabled=True).update(
        enabled=False, disabled_reason=DisabledReason.MANUAL, updated_at=timezone.now()
    )


def credential_reset_failures(*, credential_ids: Iterable[int]) -> int:
    """Zero the failure counters; a credential disabled for failures is enabled again."""
    ids = list(credential_ids)
    now = timezone.now()
    Credential.objects.filter(
        pk__in=ids,
        enabled=False,
        disabled_reason__in=[
            DisabledReason.TOO_MANY_FAILURES,
            DisabledReason.TOO_MANY_REFRESH_FAILURES,
        ],
    ).update(enabled=True, disabled_reason="", updated_at=now)
    return Credential.objects.filter(pk__in=ids).update(
        failure_count=0, refresh_failure_count=0, total_failure_count=0, updated_at=now
    )


def groups_ensure(*, names: Iterable[str]) -> dict[str, CredentialGroup]:
    """Return groups by name, creating the missing ones (spec kiro-ops §3.11)."""
    wanted = sorted(set(names))
    existing = {g.name: g for g in CredentialGroup.objects.filter(name__in=wanted)}
    for name in wanted:
        if name not in existing:
            existing[name] = CredentialGroup.objects.create(name=name)
    return existing


# --- kiro-rs import ----------------------------------------------------------------------


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
        kiro_files.parse_config(config_text, config_name) if config_text is not None else None
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
_IMPORTED_DEFAULTS: dict[str, Any] = {
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
        for attr, default in _IMPORTED_DEFAULTS.items():
            value = entry.values.get(attr)
            setattr(credential, attr, default if value is None else value)
        credential.set_refresh_token(credential.refresh_token)
        credential.set_kiro_api_key(credential.kiro_api_key)
        credential.enabled = entry.values["enabled"]
        credential.disabled_reason = entry.values.get("disabled_reason") or ""
        credential.kiro_extra = entry.kiro_extra
        credential.save()
        credential.groups.set([groups[name] for name in entry.groups])
    _reset_sequences()
    return plan


def _reset_sequences() -> None:
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
    values = {key.attr: getattr(settings_row, key.attr) for key in kiro_files.CONFIG_KEYS}
    return kiro_files.render_config(values)


def next_credential_id() -> int:
    """Return the id a new credential would get (max + 1), for forms that preview it."""
    return (Credential.objects.aggregate(top=Max("pk"))["top"] or 0) + 1


# --- pool bookkeeping (spec kiro-ops §3.5–§3.9) -------------------------------------------

FAILURES_BEFORE_DISABLE = 3


def pool_set_current(*, credential_id: int | None) -> None:
    """Move priority mode's sticky current credential (shared by every process)."""
    GatewaySettings.objects.filter(pk=GatewaySettings.singleton_id).update(
        current_credential_id=credential_id
    )
    selectors.note_current_credential(credential_id)


def credential_disable_auto(*, credential_id: int, reason: str) -> None:
    """Disable a credential for an upstream reason (QuotaExceeded, Suspended, ...)."""
    Credential.objects.filter(pk=credential_id).update(
        enabled=False,
        disabled_reason=reason,
        failure_count=FAILURES_BEFORE_DISABLE,
        total_failure_count=F("total_failure_count") + 1,
        updated_at=timezone.now(),
    )


def credential_count_failure(*, credential_id: int) -> bool:
    """Count one auth failure; at three in a row disable (TooManyFailures). Return disabled?"""
    now = timezone.now()
    Credential.objects.filter(pk=credential_id).update(
        failure_count=F("failure_count") + 1,
        total_failure_count=F("total_failure_count") + 1,
        updated_at=now,
    )
    return bool(
        Credential.objects.filter(
            pk=credential_id, enabled=True, failure_count__gte=FAILURES_BEFORE_DISABLE
        ).update(enabled=False, disabled_reason=DisabledReason.TOO_MANY_FAILURES, updated_at=now)
    )


def credential_cooldown(*, credential_id: int, seconds: int) -> None:
    """Cool a throttled credential down (spec kiro-ops §3.7); never leads to a disable."""
    now = timezone.now()
    until = now + timedelta(seconds=max(1, seconds))
    Credential.objects.filter(pk=credential_id).filter(
        Q(cooldown_until__isnull=True) | Q(cooldown_until__lt=until)
    ).update(cooldown_until=until, updated_at=now)
    Credential.objects.filter(pk=credential_id).update(
        total_failure_count=F("total_failure_count") + 1
    )


def credential_report_success(*, credential_id: int, model: str | None) -> None:
    """Record a served request: counters, last use, cooldown and self-heal streak cleared.

    One UPDATE (every served request runs it): hand-built SQL (kiro_site/fastsql.py). SET
    expressions all read the row as it was, so the CASEs see the old self_heal_model."""
    now = fastsql.prep(Credential, "last_used_at", timezone.now())
    sql, params = _success_sql(bool(model)), [now]
    if model:
        # spec kiro-ops §3.9: only a success on the streak's own model clears it.
        params += [model.lower()] * 3
    fastsql.execute(sql, [*params, credential_id])


@functools.cache
def _success_sql(with_model: bool) -> str:
    def c(name: str) -> str:
        return fastsql.column(Credential, name)

    sets = [
        f"{c('success_count')} = {c('success_count')} + 1",
        f"{c('last_used_at')} = %s",
        f"{c('failure_count')} = 0",
        f"{c('refresh_failure_count')} = 0",
        f"{c('cooldown_until')} = NULL",
    ]
    if with_model:
        same = f"{c('self_heal_model')} = %s"
        sets += [
            f"{c('self_heal_rounds')} = CASE WHEN {same} THEN 0 ELSE {c('self_heal_rounds')} END",
            f"{c('last_self_heal_at')} = CASE WHEN {same} THEN NULL "
            f"ELSE {c('last_self_heal_at')} END",
            f"{c('self_heal_model')} = CASE WHEN {same} THEN '' ELSE {c('self_heal_model')} END",
        ]
    return f"UPDATE {fastsql.table(Credential)} SET {', '.join(sets)} WHERE {c('id')} = %s"


def credential_self_heal(*, credential_ids: Iterable[int], model: str | None) -> int:
    """Re-enable TooManyFailures credentials for another try (spec kiro-ops §3.9)."""
    now = timezone.now()
    return Credential.objects.filter(
        pk__in=list(credential_ids),
        enabled=False,
        disabled_reason=DisabledReason.TOO_MANY_FAILURES,
    ).update(
        enabled=True,
        disabled_reason="",
        failure_count=0,
        self_heal_rounds=F("self_heal_rounds") + 1,
        self_heal_total=F("self_heal_total") + 1,
        last_self_heal_at=now,
        self_heal_model=(model or "").lower(),
        updated_at=now,
    )


# --- token refresh bookkeeping (spec kiro-protocol §8) ------------------------------------


def credential_refresh_claim(
    *, credential_id: int, seen_version: int, owner: str, ttl_seconds: int
) -> bool:
    """Claim the right to refresh with a conditional UPDATE; True for exactly one caller."""
    now = timezone.now()
    return bool(
        Credential.objects.filter(pk=credential_id, token_version=seen_version)
        .filter(Q(refresh_claimed_until__isnull=True) | Q(refresh_claimed_until__lt=now))
        .update(
            refresh_claimed_until=now + timedelta(seconds=ttl_seconds),
            refresh_claim_owner=owner,
        )
    )


def credential_refresh_commit(
    *,
    credential_id: int,
    owner: str,
    access_token: str,
    expires_at: Any,
    refresh_token: str | None,
    profile_arn: str | None,
) -> None:
    """Store a refreshed token, bump token_version and release the claim."""
    credential = Credential.objects.get(pk=credential_id)
    credential.access_token = access_token
    credential.expires_at = expires_at
    if refresh_token:
        credential.set_refresh_token(refresh_token)  # rotated (spec kiro-ops §2.8)
    if profile_arn:
        credential.profile_arn = profile_arn
    credential.token_version += 1
    credential.refresh_claimed_until = None
    credential.refresh_claim_owner = ""
    credential.refresh_failure_count = 0
    credential.refresh_count += 1
    credential.last_refreshed_at = timezone.now()
    credential.save(update_fields=[
        "access_token", "expires_at", "refresh_token", "refresh_token_hash", "profile_arn",
        "token_version", "refresh_claimed_until", "refresh_claim_owner",
        "refresh_failure_count", "refresh_count", "last_refreshed_at", "updated_at",
    ])  # fmt: skip


def credential_refresh_failed(*, credential_id: int, owner: str, invalid_grant: bool) -> bool:
    """Record a failed refresh and release the claim. Return whether it was disabled."""
    now = timezone.now()
    release = {"refresh_claimed_until": None, "refresh_claim_owner": "", "updated_at": now}
    rows = Credential.objects.filter(pk=credential_id)
    if invalid_grant:
        rows.update(enabled=False, disabled_reason=DisabledReason.INVALID_REFRESH_TOKEN, **release)
        return True
    rows.update(refresh_failure_count=F("refresh_failure_count") + 1, **release)
    return bool(
        rows.filter(enabled=True, refresh_failure_count__gte=FAILURES_BEFORE_DISABLE).update(
            enabled=False, disabled_reason=DisabledReason.TOO_MANY_REFRESH_FAILURES
        )
    )


def credential_refresh_release(*, credential_id: int, owner: str) -> None:
    """Give up a refresh claim without counting a failure."""
    Credential.objects.filter(pk=credential_id, refresh_claim_owner=owner).update(
        refresh_claimed_until=None, refresh_claim_owner=""
    )


def credential_set_profile_arn(*, credential_id: int, profile_arn: str) -> None:
    """Store a profileArn found by ListAvailableProfiles (spec kiro-protocol §8.9)."""
    Credential.objects.filter(pk=credential_id).update(
        profile_arn=profile_arn, updated_at=timezone.now()
    )


def credential_pin_machine_id(*, credential_id: int, machine_id: str) -> None:
    """Persist a derived machine id so it survives refresh-token rotation (spec §9.1)."""
    Credential.objects.filter(pk=credential_id, machine_id="").update(machine_id=machine_id)


def credential_set_models(*, credential_id: int, models: list[str]) -> None:
    """Store a credential's upstream model list (ListAvailableModels, spec kiro-ops §3.10)."""
    Credential.objects.filter(pk=credential_id).update(
        available_models=models, models_checked_at=timezone.now()
    )


# --- operator console: balance, overage, bulk edits (spec kiro-ops §8.1, §10 #122–#135) ------

BALANCE_TTL = timedelta(minutes=5)


def credential_store_balance(*, credential_id: int, balance: dict[str, Any]) -> None:
    """Cache a getUsageLimits balance; update the title, backfill an empty email (§8.1)."""
    credential = Credential.objects.filter(pk=credential_id).first()
    if credential is None:
        return
    credential.balance = balance
    credential.balance_checked_at = timezone.now()
    fields = ["balance", "balance_checked_at", "updated_at"]
    title = balance.get("subscription_title") or ""
    if title and title != credential.subscription_title:
        credential.subscription_title = title  # drives the Opus/FREE rule (spec §3.1)
        fields.append("subscription_title")
    email = balance.get("email") or ""
    if email and not credential.email:
        credential.email = email
        fields.append("email")
    capability = balance.get("overage_capability_raw") or ""
    if capability:
        credential.overage_capability = capability[:32]
        fields.append("overage_capability")
    status = balance.get("overage_status") or ""
    if status:
        credential.overage_status = status[:16]
        fields.append("overage_status")
    credential.save(update_fields=fields)


def credential_set_overage_status(*, credential_id: int, status: str) -> None:
    """Record a changed overage status and drop the cached balance (spec §8.1)."""
    Credential.objects.filter(pk=credential_id).update(
        overage_status=status, balance_checked_at=None, updated_at=timezone.now()
    )


def credential_delete(*, credential_ids: Iterable[int]) -> int:
    """Delete credentials (any state may be deleted, spec kiro-ops #114 [F])."""
    ids = list(credential_ids)
    count = Credential.objects.filter(pk__in=ids).count()
    Credential.objects.filter(pk__in=ids).delete()
    return count


def credential_delete_disabled() -> list[int]:
    """Delete every disabled credential ("clear disabled", spec kiro-ops #124); return ids."""
    ids = list(Credential.objects.filter(enabled=False).values_list("pk", flat=True))
    Credential.objects.filter(pk__in=ids).delete()
    return ids


def _balance_exhausted(balance: Any) -> bool:
    if not isinstance(balance, dict):
        return False
    remaining = balance.get("remaining")
    percentage = balance.get("usage_percentage")
    return (isinstance(remaining, int | float) and remaining <= 0) or (
        isinstance(percentage, int | float) and percentage >= 100
    )


def credential_disable_exhausted(*, credential_ids: Iterable[int] | None = None) -> list[int]:
    """Disable enabled credentials whose cached balance is used up (spec kiro-ops #125)."""
    queryset = Credential.objects.filter(enabled=True, balance__isnull=False)
    if credential_ids is not None:
        queryset = queryset.filter(pk__in=list(credential_ids))
    rows = queryset.values_list("pk", "balance")
    ids = [pk for pk, balance in rows if _balance_exhausted(balance)]
    Credential.objects.filter(pk__in=ids).update(
        enabled=False, disabled_reason=DisabledReason.QUOTA_EXCEEDED, updated_at=timezone.now()
    )
    return ids


@transaction.atomic
def credential_edit_groups(
    *, credential_ids: Iterable[int], names: Iterable[str], mode: str
) -> int:
    """Replace, append or remove groups on credentials (spec kiro-ops #127)."""
    if mode not in ("replace", "append", "remove"):
        raise ValueError(f"unknown mode {mode!r}")
    wanted = [n.strip() for n in names if n.strip()]
    credentials = list(Credential.objects.filter(pk__in=list(credential_ids)))
    if mode == "remove":
        groups = list(CredentialGroup.objects.filter(name__in=wanted))
    else:
        groups = list(groups_ensure(names=wanted).values())
    for credential in credentials:
        if mode == "replace":
            credential.groups.set(groups)
        elif mode == "append":
            credential.groups.add(*groups)
        else:
            credential.groups.remove(*groups)
    Credential.objects.filter(pk__in=[c.pk for c in credentials]).update(updated_at=timezone.now())
    return len(credentials)


def credential_set_proxy(*, credential_ids: Iterable[int], url: str) -> int:
    """Copy a proxy URL onto credentials; no live link to the pool (spec kiro-ops §7)."""
    return Credential.objects.filter(pk__in=list(credential_ids)).update(
        proxy_url=url, proxy_username="", proxy_password="", updated_at=timezone.now()
    )


def credential_assign_round_robin(*, credential_ids: Iterable[int]) -> dict[int, str]:
    """Spread the assignable pool URLs over credentials: credential i gets URL i mod n (§7)."""
    urls = proxy_assignable_urls()
    ids = sorted(credential_ids)
    if not urls:
        return {}
    plan = {pk: urls[i % len(urls)] for i, pk in enumerate(ids)}
    with transaction.atomic():
        for url in set(plan.values()):
            credential_set_proxy(
                credential_ids=[pk for pk, chosen in plan.items() if chosen == url], url=url
            )
    return plan


# --- proxy pool (spec kiro-ops §7) ------------------------------------------------------------

PROXY_SCHEMES = ("http", "https", "socks5", "socks4")
PROXY_FAILURES_BEFORE_DISABLE = 3


proxy_mask = mask_proxy_url  # one implementation, shared with ProxyEntry.__str__


def proxy_url_problem(url: str) -> str | None:
    """Say what is wrong with a proxy URL, or None (scheme and host:port required, §7)."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in PROXY_SCHEMES:
        return "the scheme must be http, https, socks5 or socks4"
    hostport = rest.rpartition("@")[2].split("/", 1)[0]
    host, colon, port = hostport.rpartition(":")
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        return "host:port is required"
    return None


def proxy_add(*, url: str, label: str = "") -> ProxyEntry:
    """Add one proxy to the pool; raise ValueError when invalid or a duplicate."""
    url = url.strip()
    problem = proxy_url_problem(url)
    if problem:
        raise ValueError(problem)
    if ProxyEntry.objects.filter(url=url).exists():
        raise ValueError("already in the pool")
    # The label doubles as the entry's name in history and messages: never the password.
    return ProxyEntry.objects.create(url=url, label=label.strip() or proxy_mask(url))


@dataclass(slots=True)
class ProxyLine:
    line: int
    url: str  # masked
    added: bool
    problem: str = ""
    proxy_id: int | None = None


def proxy_bulk_add(*, text: str) -> list[ProxyLine]:
    """Add one proxy per non-empty line; report each line (added, invalid, duplicate)."""
    report: list[ProxyLine] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        url = raw.strip()
        if not url or url.startswith("#"):
            continue
        try:
            entry = proxy_add(url=url)
        except ValueError as exc:
            report.append(ProxyLine(number, proxy_mask(url), False, str(exc)))
        else:
            report.append(ProxyLine(number, proxy_mask(url), True, proxy_id=entry.pk))
    return report


def proxy_record_check(*, proxy_id: int, healthy: bool, latency_ms: int | None) -> bool:
    """Store one health check; the third failure in a row disables the entry. Disabled?"""
    now = timezone.now()
    rows = ProxyEntry.objects.filter(pk=proxy_id)
    if healthy:
        rows.update(
            health=ProxyHealth.HEALTHY,
            latency_ms=latency_ms,
            last_checked_at=now,
            consecutive_failures=0,
        )
        return False
    rows.update(
        health=ProxyHealth.UNHEALTHY,
        latency_ms=None,
        last_checked_at=now,
        consecutive_failures=F("consecutive_failures") + 1,
    )
    return bool(
        rows.filter(enabled=True, consecutive_failures__gte=PROXY_FAILURES_BEFORE_DISABLE).update(
            enabled=False, auto_disabled=True
        )
    )


def proxy_set_enabled(*, proxy_ids: Iterable[int], enabled: bool) -> int:
    """Enable or disable pool entries; enabling clears the failure counter and auto flag."""
    rows = ProxyEntry.objects.filter(pk__in=list(proxy_ids))
    if enabled:
        return rows.update(enabled=True, consecutive_failures=0, auto_disabled=False)
    return rows.update(enabled=False)


def proxy_assignable_urls() -> list[str]:
    """Return the URLs round-robin may hand out: enabled and not unhealthy, in pool order."""
    return list(
        ProxyEntry.objects.filter(enabled=True)
        .exclude(health=ProxyHealth.UNHEALTHY)
        .order_by("pk")
        .values_list("url", flat=True)
    )


# --- background job leases ---------------------------------------------------------------------


def job_claim(*, name: str, holder: str, ttl_seconds: float) -> bool:
    """Claim a job's lease with a conditional UPDATE; True for exactly one claimer."""
    JobLock.objects.get_or_create(name=name)
    now = timezone.now()
    return bool(
        JobLock.objects.filter(name=name)
        .filter(Q(expires_at__isnull=True) | Q(expires_at__lt=now))
        .update(holder=holder, expires_at=now + timedelta(seconds=ttl_seconds))
    )


def job_finish(*, name: str, holder: str, result: str) -> None:
    """Record a job's run; the lease stays until it expires, which spaces the runs."""
    JobLock.objects.filter(name=name, holder=holder).update(
        last_run_at=timezone.now(), last_result=result[:2000]
    )


# --- batch import (spec kiro-ops §10 #118–#123, §6.3) --------------------------------------------


@dataclass(slots=True)
class BatchImportRun:
    """What the items of one batch share: the tokens seen so far and the proxies to hand out."""

    include_errored: bool
    proxies: list[str]
    in_batch: dict[str, int] = field(default_factory=dict)  # token hash -> item index


def credential_batch_import_start(*, include_errored: bool) -> BatchImportRun:
    """Begin a batch import; items then go one at a time through `..._item`."""
    return BatchImportRun(include_errored=include_errored, proxies=proxy_assignable_urls())


@transaction.atomic
def credential_batch_import_item(
    *, run: BatchImportRun, item: batch_import.BatchItem
) -> batch_import.BatchOutcome:
    """Create the credential of one valid, new item; report what happened to it.

    One transaction per item, so a stopped stream keeps the items already finished (§6.3).
    """

    def report(outcome: str, detail: str = "", pk: int | None = None) -> batch_import.BatchOutcome:
        return batch_import.BatchOutcome(item.index, item.source, item.label, outcome, detail, pk)

    if item.errored and not run.include_errored:
        return report("skipped", 'KAM status "error"')
    if item.problem:
        return report("invalid", item.problem)
    refresh = item.values.get("refresh_token") or ""
    api_key = item.values.get("kiro_api_key") or ""
    hashes = [
        (sha256_hex(secret), column, kind)
        for secret, column, kind in (
            (refresh, "refresh_token_hash", "refresh token"),
            (api_key, "kiro_api_key_hash", "API key"),
        )
        if secret
    ]
    earlier = next((run.in_batch[d] for d, _, _ in hashes if d in run.in_batch), None)
    if earlier is not None:
        return report("duplicate", f"same token as item {earlier} of this batch")
    duplicate = next(
        (
            kind
            for digest, column, kind in hashes
            if Credential.objects.filter(**{column: digest}).exists()
        ),
        None,
    )
    if duplicate:
        return report("duplicate", f"same {duplicate} as an existing credential")
    credential = Credential()
    for attr, default in _IMPORTED_DEFAULTS.items():
        value = item.values.get(attr)
        setattr(credential, attr, default if value is None else value)
    credential.set_refresh_token(refresh)
    credential.set_kiro_api_key(api_key)
    credential.enabled = item.values.get("enabled", True)
    credential.disabled_reason = item.values.get("disabled_reason") or ""
    credential.kiro_extra = item.kiro_extra
    if not credential.proxy_url and run.proxies:
        credential.proxy_url = secrets.choice(run.proxies)  # spec kiro-ops #123
    credential.save()
    groups = groups_ensure(names=item.groups)
    credential.groups.set([groups[name] for name in item.groups])
    for digest, _, _ in hashes:
        run.in_batch[digest] = item.index
    return report("imported", "", credential.pk)


@transaction.atomic
def credential_batch_import(
    *, items: list[batch_import.BatchItem], include_errored: bool
) -> list[batch_import.BatchOutcome]:
    """Create a credential per valid, new item; report every item (duplicates are skipped)."""
    run = credential_batch_import_start(include_errored=include_errored)
    return [credential_batch_import_item(run=run, item=item) for item in items]


# --- login flows (spec kiro-ops §8.4) -----------------------------------------------------------


def _check_new_refresh_token(refresh_token: str, *, exclude_id: int | None = None) -> None:
    if not refresh_token:
        raise ValueError("the login gave no refresh token")
    others = Credential.objects.filter(refresh_token_hash=sha256_hex(refresh_token))
    if exclude_id is not None:
        others = others.exclude(pk=exclude_id)
    if others.exists():
        raise ValueError("another credential already has this refresh token")


def credential_create_from_login(
    *,
    auth_method: str,
    refresh_token: str,
    access_token: str,
    expires_at: Any,
    provider: str = "",
    client_id: str = "",
    client_secret: str = "",
    start_url: str = "",
    region: str = "",
    profile_arn: str = "",
    priority: int | None = None,
    email: str = "",
    proxy_url: str = "",
) -> int:
    """Add the credential a device-code or social login produced; return its id."""
    _check_new_refresh_token(refresh_token)
    credential = Credential(
        auth_method=auth_method,
        provider=provider,
        access_token=access_token,
        expires_at=expires_at,
        client_id=client_id,
        client_secret=client_secret,
        start_url=start_url,
        region=region,
        auth_region=region,
        profile_arn=profile_arn,
        priority=priority if priority is not None else 0,
        email=email,
        proxy_url=proxy_url,
    )
    credential.set_refresh_token(refresh_token)
    credential.save()
    return credential.pk


@transaction.atomic
def credential_relogin(
    *,
    credential_id: int,
    auth_method: str,
    refresh_token: str,
    access_token: str,
    expires_at: Any,
    provider: str = "",
    client_id: str = "",
    client_secret: str = "",
    start_url: str = "",
    region: str = "",
    profile_arn: str = "",
) -> None:
    """Put freshly minted tokens on an existing credential (spec kiro-ops §8.4 re-login).

    Keeps id, priority, groups, email and proxy. IdC replaces the whole client-bound set and
    clears what belonged to the old registration; both reset health and the self-heal streak
    (the total stays) and drop the cached balance and model list.
    """
    credential = Credential.objects.select_for_update().filter(pk=credential_id).first()
    if credential is None:
        raise ValueError(f"credential #{credential_id} no longer exists")
    _check_new_refresh_token(refresh_token, exclude_id=credential_id)
    credential.set_refresh_token(refresh_token)
    credential.access_token = access_token
    credential.expires_at = expires_at
    credential.auth_method = auth_method
    if auth_method == "idc":
        credential.provider = provider
        credential.client_id = client_id
        credential.client_secret = client_secret
        credential.region = region
        credential.auth_region = region
        credential.start_url = start_url
        credential.profile_arn = ""
        credential.token_endpoint = ""
        credential.issuer_url = ""
        credential.scopes = ""
        credential.set_kiro_api_key("")
    elif profile_arn:
        credential.profile_arn = profile_arn
    credential.enabled = True
    credential.disabled_reason = ""
    credential.failure_count = 0
    credential.refresh_failure_count = 0
    credential.cooldown_until = None
    credential.self_heal_rounds = 0
    credential.last_self_heal_at = None
    credential.self_heal_model = ""
    credential.balance = None
    credential.balance_checked_at = None
    credential.available_models = None
    credential.models_checked_at = None
    credential.token_version += 1  # other processes drop their copy of the old token
    credential.refresh_claimed_until = None
    credential.refresh_claim_owner = ""
    credential.save()
