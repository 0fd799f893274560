"""Reads for the serving path: plain snapshots, so no model instance crosses into async code."""

from __future__ import annotations

import functools
import hashlib
import re
import threading
import time
from dataclasses import dataclass, replace
from datetime import datetime

from django.conf import settings
from django.db import transaction

from credentials import fastsql
from credentials.models import ClientKey, Credential, CredentialGroup, GatewaySettings
from credentials.pool import Candidate
from gateway.kiro.types import (  # noqa: F401 (re-exported: the credential snapshot)
    BUILDER_ID_PLACEHOLDER_ARN,
    SOCIAL_PROFILE_ARN,
    CredentialAccess,
)

_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")
_UUID = re.compile(
    r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?"
    r"[0-9a-fA-F]{12}$"
)


@dataclass(frozen=True, slots=True)
class KeyIdentity:
    id: int
    name: str
    group: str | None
    is_system: bool
    limited: bool = False  # any limit set: requests are reserved before going upstream
    last_used_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    """The runtime settings the serving path needs, read once per request."""

    load_balancing_mode: str
    region: str
    auth_region: str
    api_region: str
    machine_id: str
    kiro_version: str
    system_version: str
    node_version: str
    tls_backend: str
    proxy_url: str
    proxy_username: str
    proxy_password: str
    default_endpoint: str
    extract_thinking: bool
    tool_compatibility_mode: str
    custom_models: tuple[dict, ...]
    account_throttle_failover: bool
    account_throttle_cooldown_secs: int
    suspended_detection_enabled: bool
    self_heal_enabled: bool
    self_heal_min_interval_secs: int
    self_heal_max_consecutive_rounds: int
    max_attempts_per_credential: int
    max_attempts_per_request: int
    stream_ping_interval_secs: int
    model_cache_ttl_secs: int
    current_credential_id: int | None
    count_tokens_api_url: str
    count_tokens_api_key: str
    count_tokens_auth_type: str
    model_resolution: str = "fallback"  # or "strict" (protocol.catalogue)
    fallback_model: str = ""  # blank: the newest listed sonnet
    prompt_cache_metering: bool = True  # usage.prompt_cache
    trace_enabled: bool = True  # off: usage records without their attempt rows
    account_rpm_limit: int = 0  # requests per minute per credential; 0: no limit (§3.8)


def normalise_machine_id(value: str) -> str | None:
    """Return a 64-hex machine id from 64 hex chars or a (doubled) UUID (spec §9.1)."""
    value = value.strip()
    if _HEX64.match(value):
        return value.lower()
    if _UUID.match(value):
        compact = value.replace("-", "").lower()
        return compact + compact
    return None


def machine_id_for(credential: Credential, config_machine_id: str) -> str:
    """Resolve the machine id of a credential (spec kiro-protocol §9.1)."""
    return machine_id_from(
        own=credential.machine_id,
        config_machine_id=config_machine_id,
        kiro_api_key=credential.kiro_api_key,
        refresh_token=credential.refresh_token,
        credential_id=credential.pk,
    )


def machine_id_from(
    *, own: str, config_machine_id: str, kiro_api_key: str, refresh_token: str, credential_id: int
) -> str:
    """Resolve a machine id from a credential's values (spec kiro-protocol §9.1)."""
    for candidate in (own, config_machine_id):
        normalised = candidate and normalise_machine_id(candidate)
        if normalised:
            return normalised
    if kiro_api_key:
        seed = "KiroAPIKey/" + kiro_api_key
    elif refresh_token:
        seed = "KotlinNativeAPI/" + refresh_token
    else:
        seed = f"KiroFallback/credential-{credential_id}"
    return hashlib.sha256(seed.encode()).hexdigest()


_config_lock = threading.Lock()
_config_cache: tuple[float, GatewayConfig] | None = None


def gateway_config() -> GatewayConfig:
    """Return the runtime settings, reusing this process's copy for KIRO_SETTINGS_CACHE_SECS.

    Reading the row costs a query on every request; the serving path reads it once per
    request, and the admin changes it rarely. Saving the row in this process forgets the copy
    (and again after the commit, so that no thread re-caches the old row meanwhile)."""
    global _config_cache
    ttl = settings.KIRO_SETTINGS_CACHE_SECS
    cached = _config_cache
    now = time.monotonic()
    if cached is not None and now - cached[0] < ttl:
        return cached[1]
    config = read_gateway_config()
    if ttl > 0:
        with _config_lock:
            _config_cache = (now, config)
    return config


def forget_gateway_config() -> None:
    """Drop this process's copy of the settings (after any write to the row)."""
    global _config_cache
    with _config_lock:
        _config_cache = None


def forget_gateway_config_on_commit() -> None:
    forget_gateway_config()
    transaction.on_commit(forget_gateway_config)


def note_current_credential(credential_id: int | None) -> None:
    """Keep this process's copy in step with a move of priority mode's current credential."""
    global _config_cache
    with _config_lock:
        if _config_cache is not None:
            stamp, config = _config_cache
            _config_cache = (stamp, replace(config, current_credential_id=credential_id))


def read_gateway_config() -> GatewayConfig:
    """Read the settings row from the database (creating it on first use)."""
    row = GatewaySettings.load()
    return GatewayConfig(
        load_balancing_mode=row.load_balancing_mode,
        region=row.region or "us-east-1",
        auth_region=row.auth_region,
        api_region=row.api_region,
        machine_id=row.machine_id,
        kiro_version=row.kiro_version,
        system_version=row.system_version,
        node_version=row.node_version,
        tls_backend=row.tls_backend,
        proxy_url=row.proxy_url,
        proxy_username=row.proxy_username,
        proxy_password=row.proxy_password,
        default_endpoint=row.default_endpoint,
        extract_thinking=row.extract_thinking,
        tool_compatibility_mode=row.tool_compatibility_mode,
        custom_models=tuple(row.custom_models or ()),
        account_throttle_failover=row.account_throttle_failover,
        account_throttle_cooldown_secs=row.account_throttle_cooldown_secs,
        suspended_detection_enabled=row.suspended_detection_enabled,
        self_heal_enabled=row.self_heal_enabled,
        self_heal_min_interval_secs=row.self_heal_min_interval_secs,
        self_heal_max_consecutive_rounds=row.self_heal_max_consecutive_rounds,
        max_attempts_per_credential=row.max_attempts_per_credential,
        max_attempts_per_request=row.max_attempts_per_request,
        stream_ping_interval_secs=row.stream_ping_interval_secs,
        model_cache_ttl_secs=row.model_cache_ttl_secs,
        current_credential_id=row.current_credential_id,
        count_tokens_api_url=row.count_tokens_api_url,
        count_tokens_api_key=row.count_tokens_api_key,
        count_tokens_auth_type=row.count_tokens_auth_type,
        model_resolution=row.model_resolution,
        fallback_model=row.fallback_model.strip(),
        prompt_cache_metering=row.prompt_cache_metering,
        trace_enabled=row.trace_enabled,
        account_rpm_limit=row.account_rpm_limit if row.account_rpm_limit_enabled else 0,
    )


_KEY_LIMITS = (
    "rpm_limit",
    "daily_token_budget",
    "monthly_token_budget",
    "daily_credit_budget",
    "monthly_credit_budget",
)  # credentials.limits.LIMIT_FIELDS (a test keeps the two equal)


@functools.cache
def _key_parts() -> tuple[str, str, str]:
    """The SELECT list, FROM and WHERE of a key lookup by hash (aliases k and g)."""
    K, G = ClientKey, CredentialGroup
    select = (
        f"{fastsql.columns(K, ('id', 'name'), 'k.')}, g.{fastsql.column(G, 'name')}, "
        f"{fastsql.columns(K, ('is_system', 'last_used_at', *_KEY_LIMITS), 'k.')}"
    )
    source = (
        f"FROM {fastsql.table(K)} k LEFT JOIN {fastsql.table(G)} g "
        f"ON g.{fastsql.column(G, 'id')} = k.{fastsql.column(K, 'group')}"
    )
    where = (
        f"WHERE k.{fastsql.column(K, 'key_hash')} = %s AND k.{fastsql.column(K, 'enabled')} = %s"
    )
    return select, source, where


def _group_members(group_id: str) -> str:
    """A subquery of the ids of the credentials in the group whose id is `group_id` (SQL)."""
    groups = Credential._meta.get_field("groups")
    member = fastsql.quote(groups.m2m_column_name())
    group = fastsql.quote(groups.m2m_reverse_name())
    through = fastsql.table(groups.remote_field.through)
    return f"SELECT m.{member} FROM {through} m WHERE m.{group} = {group_id}"


@functools.cache
def _key_sql() -> str:
    select, source, where = _key_parts()
    return f"SELECT {select} {source} {where}"


def client_key_by_hash(key_hash: str) -> KeyIdentity | None:
    """Return the enabled client key with this SHA-256 hash (one indexed lookup).

    Never cached: a disabled or rotated key stops at once, in every process (issue 5).
    Hand-built SQL: this runs on every request (credentials/fastsql.py)."""
    rows = fastsql.fetch(_key_sql(), (key_hash, True))
    return _key_from(rows[0]) if rows else None


_KEY_WIDTH = 5 + len(_KEY_LIMITS)  # the key's columns in _key_sql and _start_sql


def _key_from(row: tuple) -> KeyIdentity:
    key_id, name, group, is_system, last_used_at, *limits = row[:_KEY_WIDTH]
    return KeyIdentity(
        key_id,
        name,
        group,
        bool(is_system),
        limited=any(value is not None for value in limits),
        last_used_at=fastsql.convert_row(ClientKey, ("last_used_at",), (last_used_at,))[0],
    )


_CANDIDATE_FIELDS = (
    "id", "priority", "enabled", "disabled_reason", "cooldown_until", "subscription_title",
    "success_count", "available_models", "self_heal_rounds", "last_self_heal_at",
    "self_heal_model",
)  # fmt: skip


@functools.cache
def _candidates_sql(grouped: bool) -> str:
    C, G = Credential, CredentialGroup
    sql = f"SELECT {fastsql.columns(C, _CANDIDATE_FIELDS)} FROM {fastsql.table(C)}"
    if grouped:
        by_name = (
            f"(SELECT {fastsql.column(G, 'id')} FROM {fastsql.table(G)} "
            f"WHERE {fastsql.column(G, 'name')} = %s)"
        )
        sql += f" WHERE {fastsql.column(C, 'id')} IN ({_group_members(by_name)})"
    return sql + f" ORDER BY {fastsql.columns(C, ('priority', 'id'))}"


def pool_candidates(*, group: str | None) -> list[Candidate]:
    """Return every credential that the key's group may use, as selection snapshots.

    A grouped key sees only its group's credentials (spec kiro-ops §3.11), so `groups` holds
    that group; for an ungrouped key, membership plays no part and `groups` is left empty.
    Hand-built SQL: this runs on every request (credentials/fastsql.py)."""
    rows = fastsql.fetch(_candidates_sql(group is not None), (group,) if group else ())
    groups = frozenset((group,)) if group is not None else frozenset()
    return [_candidate_from(row, groups) for row in rows]


def _candidate_from(row: tuple, groups: frozenset[str]) -> Candidate:
    (cid, priority, enabled, reason, cooldown, title, successes, models, rounds, healed,
     heal_model) = fastsql.convert_row(Credential, _CANDIDATE_FIELDS, row)  # fmt: skip
    return Candidate(
        id=cid,
        priority=priority,
        enabled=enabled,
        disabled_reason=reason,
        cooldown_until=cooldown,
        subscription_title=title,
        groups=groups,
        success_count=successes,
        models=frozenset(m.lower() for m in models) if models is not None else None,
        self_heal_rounds=rounds,
        last_self_heal_at=healed,
        self_heal_model=heal_model,
    )


_ACCESS_FIELDS = (
    "id", "auth_method", "provider", "refresh_token", "access_token", "expires_at",
    "token_version", "client_id", "client_secret", "kiro_api_key", "token_endpoint", "scopes",
    "region", "auth_region", "api_region", "machine_id", "profile_arn", "endpoint",
    "proxy_url", "proxy_username", "proxy_password", "models_checked_at",
)  # fmt: skip


@functools.cache
def _access_sql() -> str:
    C = Credential
    return (
        f"SELECT {fastsql.columns(C, _ACCESS_FIELDS)} FROM {fastsql.table(C)} "
        f"WHERE {fastsql.column(C, 'id')} = %s"
    )


def credential_access(*, credential_id: int, config: GatewayConfig) -> CredentialAccess | None:
    """Return what calling Kiro as this credential needs, or None if it is gone.

    Hand-built SQL: this runs on every request (credentials/fastsql.py)."""
    rows = fastsql.fetch(_access_sql(), (credential_id,))
    if not rows:
        return None
    return _access_from(rows[0], config)


def _pin_machine_id(*, credential_id: int, machine_id: str) -> None:
    """Persist a derived machine id so it survives refresh-token rotation (spec §9.1).

    The one write of this module: the id is derived while the access is read, and pinning
    it there means the next read finds it (services import selectors, not the reverse)."""
    Credential.objects.filter(pk=credential_id, machine_id="").update(machine_id=machine_id)


def _access_from(row: tuple, config: GatewayConfig) -> CredentialAccess:
    """Build the access of a credential from its _ACCESS_FIELDS values (secrets decrypted)."""
    c = dict(zip(_ACCESS_FIELDS, fastsql.convert_row(Credential, _ACCESS_FIELDS, row), strict=True))
    machine_id = machine_id_from(
        own=c["machine_id"],
        config_machine_id=config.machine_id,
        kiro_api_key=c["kiro_api_key"],
        refresh_token=c["refresh_token"],
        credential_id=c["id"],
    )
    if not c["machine_id"] and not config.machine_id:
        _pin_machine_id(credential_id=c["id"], machine_id=machine_id)
    return CredentialAccess(
        id=c["id"],
        auth_method=c["auth_method"],
        provider=c["provider"],
        refresh_token=c["refresh_token"],
        access_token=c["access_token"],
        expires_at=c["expires_at"],
        token_version=c["token_version"],
        client_id=c["client_id"],
        client_secret=c["client_secret"],
        kiro_api_key=c["kiro_api_key"],
        token_endpoint=c["token_endpoint"],
        scopes=c["scopes"],
        # spec kiro-protocol §1.1: region precedence.
        auth_region=c["auth_region"] or c["region"] or config.auth_region or config.region,
        api_region=c["api_region"] or config.api_region or config.region,
        machine_id=machine_id,
        profile_arn=c["profile_arn"],
        endpoint=c["endpoint"] or config.default_endpoint,
        proxy_url=c["proxy_url"],
        proxy_username=c["proxy_username"],
        proxy_password=c["proxy_password"],
        models_checked_at=c["models_checked_at"],
    )


# --- the first read of a request ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StartRead:
    """The key, its pool and every pool credential's access columns, from one statement."""

    key: KeyIdentity | None
    candidates: list[Candidate]
    access_rows: dict[int, tuple]  # credential id -> raw _ACCESS_FIELDS values (encrypted)

    def access(self, credential_id: int, config: GatewayConfig) -> CredentialAccess | None:
        """Build one credential's access (only the chosen one is decrypted)."""
        row = self.access_rows.get(credential_id)
        return None if row is None else _access_from(row, config)


_ACCESS_ONLY = tuple(name for name in _ACCESS_FIELDS if name not in _CANDIDATE_FIELDS)


@functools.cache
def _start_sql() -> str:
    C = Credential
    select, source, where = _key_parts()
    key_group = f"k.{fastsql.column(ClientKey, 'group')}"
    return (
        f"SELECT {select}, {fastsql.columns(C, (*_CANDIDATE_FIELDS, *_ACCESS_ONLY), 'c.')} "
        f"{source} LEFT JOIN {fastsql.table(C)} c ON ({key_group} IS NULL "
        f"OR c.{fastsql.column(C, 'id')} IN ({_group_members(key_group)})) {where} "
        f"ORDER BY {fastsql.columns(C, ('priority', 'id'), 'c.')}"
    )


def request_start(key_hash: str) -> StartRead:
    """Read the enabled key with this hash and the credentials its group may use, in one
    statement: on Postgres one round trip instead of three before the first byte
    (client_key_by_hash, pool_candidates and credential_access give the same values)."""
    rows = fastsql.fetch(_start_sql(), (key_hash, True))
    if not rows:
        return StartRead(None, [], {})
    key = _key_from(rows[0])
    groups = frozenset((key.group,)) if key.group is not None else frozenset()
    candidates, access_rows = [], {}
    width = len(_CANDIDATE_FIELDS)
    for row in rows:
        credential = row[_KEY_WIDTH:]
        if credential[0] is None:
            continue  # the key's group has no credential (LEFT JOIN)
        candidates.append(_candidate_from(credential[:width], groups))
        access_rows[credential[0]] = (credential[0], *credential[width:])
    return StartRead(key, candidates, access_rows)
