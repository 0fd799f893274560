"""Parse pasted or uploaded batch-import JSON into credential values (spec kiro-ops §2.3, §2.11).

Accepted shapes, per file: an array of credential objects (kiro-rs credentials.json entries or
the admin "add" shape), a Kiro Account Manager export (`{version, accounts: [...]}`, accounts
with nested `credentials`), a flat list of such accounts, or one account/credential object.
Pure functions: no database work here; `services.credential_batch_import` writes the result.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from credentials import kiro_files

# KAM `credentials` keys copied as they are (they share kiro-rs spelling).
_KAM_CREDENTIAL_KEYS = (
    "refreshToken",
    "accessToken",
    "clientId",
    "clientSecret",
    "region",
    "authRegion",
    "apiRegion",
    "startUrl",
    "tokenEndpoint",
    "issuerUrl",
    "scopes",
    "provider",
    "kiroApiKey",
)
_KAM_ACCOUNT_KEYS = ("email", "machineId", "subscriptionTitle", "proxyUrl", "sourceChannel")
_API_KEY_ALIASES = {"api_key", "apikey"}


@dataclass(frozen=True, slots=True)
class BatchItem:
    """One account of a batch: model values when valid, else the reason it is refused."""

    index: int
    source: str
    label: str
    values: dict[str, Any] = field(default_factory=dict, repr=False)  # holds secrets
    groups: list[str] = field(default_factory=list)
    kiro_extra: dict[str, Any] = field(default_factory=dict, repr=False)
    errored: bool = False  # KAM `status: "error"`
    problem: str = ""


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    """What happened to one item: imported, duplicate, invalid, skipped, verified, verify-failed."""

    index: int
    source: str
    label: str
    outcome: str
    detail: str = ""
    credential_id: int | None = None


def parse_batch(texts: list[tuple[str, str]]) -> list[BatchItem]:
    """Parse `(name, text)` pairs into one numbered list of items, in file order."""
    items: list[BatchItem] = []
    for name, text in texts:
        for raw, errored, problem in _objects(text):
            index = len(items) + 1
            if problem:
                items.append(BatchItem(index=index, source=name, label="", problem=problem))
            else:
                items.append(_item(index, name, raw, errored))
    return items


def summarise(outcomes: Iterable[BatchOutcome]) -> str:
    """Return the one-line summary: counts per outcome, in a fixed order."""
    counts: dict[str, int] = {}
    for outcome in outcomes:
        counts[outcome.outcome] = counts.get(outcome.outcome, 0) + 1
    order = ("verified", "imported", "verify-failed", "duplicate", "invalid", "skipped")
    parts = [f"{counts[name]} {name}" for name in order if counts.get(name)]
    return f"{sum(counts.values())} item(s): " + (", ".join(parts) or "nothing to import")


def apply_verification(
    outcomes: list[BatchOutcome], results: Mapping[int, tuple[bool, str]]
) -> list[BatchOutcome]:
    """Mark imported outcomes verified or verify-failed (deleted) from balance results."""
    marked: list[BatchOutcome] = []
    for outcome in outcomes:
        result = results.get(outcome.credential_id) if outcome.credential_id else None
        if outcome.outcome != "imported" or result is None:
            marked.append(outcome)
        elif result[0]:
            marked.append(replace(outcome, outcome="verified", detail=result[1]))
        else:
            marked.append(
                replace(
                    outcome,
                    outcome="verify-failed",
                    detail=f"{result[1]} (deleted)",
                    credential_id=None,
                )
            )
    return marked


# --- shapes ----------------------------------------------------------------------------------


def _objects(text: str) -> list[tuple[dict[str, Any], bool, str]]:
    """Return `(object, errored, problem)` for each account of one file."""
    if not text.strip():
        return [({}, False, "empty input")]
    try:
        data = json.loads(text)
    except ValueError as exc:
        return [({}, False, f"not valid JSON ({exc})")]
    if isinstance(data, dict) and isinstance(data.get("accounts"), list):
        data = data["accounts"]  # KAM export
    elif isinstance(data, dict):
        data = [data]  # one account or credential
    if not isinstance(data, list):
        return [({}, False, "expected an object, an array of objects or a KAM export")]
    found: list[tuple[dict[str, Any], bool, str]] = []
    for entry in data:
        if not isinstance(entry, dict):
            found.append(({}, False, "expected a JSON object"))
        else:
            found.append((entry, str(entry.get("status", "")).lower() == "error", ""))
    return found


def _item(index: int, source: str, raw: dict[str, Any], errored: bool) -> BatchItem:
    entry = _kiro_entry(raw)
    label = str(entry.get("email") or raw.get("email") or "")[:254]
    method, problem = _auth_method(entry)
    if problem:
        return BatchItem(index=index, source=source, label=label, errored=errored, problem=problem)
    entry["authMethod"] = method
    try:
        parsed, _ = kiro_files.parse_credentials(json.dumps([entry]), source)
    except kiro_files.KiroFileError as exc:
        where = f"{exc.field}: " if exc.field else ""
        return BatchItem(
            index=index, source=source, label=label, errored=errored, problem=where + exc.reason
        )
    if not parsed:
        return BatchItem(index=index, source=source, label=label, problem="no credential")
    credential = parsed[0]
    return BatchItem(
        index=index,
        source=source,
        label=label or credential.values.get("provider") or "",
        values=credential.values,
        groups=credential.groups,
        kiro_extra=credential.kiro_extra,
        errored=errored,
    )


def _kiro_entry(raw: dict[str, Any]) -> dict[str, Any]:
    """Turn a KAM account (nested or flat) or a credential object into a kiro-rs entry."""
    nested = raw.get("credentials")
    if not isinstance(nested, dict) and "idp" not in raw and "status" not in raw:
        entry = {k: v for k, v in raw.items() if k != "id"}  # kiro-rs / admin shape
        if isinstance(entry.get("expiresAt"), int | float):
            entry["expiresAt"] = _from_millis(entry["expiresAt"])
        return entry
    source: dict[str, Any] = {**raw, **(nested if isinstance(nested, dict) else {})}
    entry = {k: source[k] for k in _KAM_CREDENTIAL_KEYS if source.get(k) not in (None, "")}
    for key in _KAM_ACCOUNT_KEYS:
        if raw.get(key) not in (None, ""):
            entry[key] = raw[key]
    if not entry.get("provider") and isinstance(raw.get("idp"), str) and raw["idp"]:
        entry["provider"] = raw["idp"]
    arn = raw.get("profileArn") or source.get("profileArn")
    if isinstance(arn, str) and arn.startswith("arn:"):
        entry["profileArn"] = arn  # spec kiro-ops §2.11: only real ARNs
    if isinstance(source.get("authMethod"), str) and source["authMethod"]:
        entry["authMethod"] = source["authMethod"]
    expires = source.get("expiresAt")
    if isinstance(expires, int | float) and not isinstance(expires, bool):
        entry["expiresAt"] = _from_millis(expires)
    elif isinstance(expires, str) and expires:
        entry["expiresAt"] = expires
    created = raw.get("createdAt")
    if isinstance(created, int | float) and not isinstance(created, bool):
        entry["createdAt"] = _from_millis(created)  # spec kiro-ops #128: kept on import
    if isinstance(raw.get("groups"), list):
        entry["groups"] = raw["groups"]
    return entry


def _from_millis(value: float) -> str:
    seconds = value / 1000 if value > 10**11 else value  # ms, or seconds from older tools
    return kiro_files.format_timestamp(datetime.fromtimestamp(seconds, tz=UTC))


def _auth_method(entry: Mapping[str, Any]) -> tuple[str, str]:
    """Infer authMethod as the admin import helper does (spec kiro-ops §2.3); or a problem."""
    declared = entry.get("authMethod")
    declared = declared.strip().lower() if isinstance(declared, str) else ""
    canonical = kiro_files.canonical_auth_method({}, declared or None)
    has_id, has_secret = bool(entry.get("clientId")), bool(entry.get("clientSecret"))
    if entry.get("tokenEndpoint") or (declared and canonical == "external_idp"):
        if not (has_id and entry.get("tokenEndpoint")):
            return "", "authMethod: an external IdP account needs clientId and tokenEndpoint"
        return "external_idp", ""
    if entry.get("kiroApiKey"):
        return "api_key", ""
    if declared in _API_KEY_ALIASES:
        return "", "kiroApiKey: an API-key account needs kiroApiKey"
    if has_id and has_secret:
        return "idc", ""
    if has_id or has_secret:
        return "", "clientId: an IdC account needs both clientId and clientSecret"
    return "social", ""
