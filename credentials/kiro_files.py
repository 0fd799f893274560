"""Read and write kiro-rs `config.json` and `credentials.json` (spec kiro-ops §1, §2).

Parsing turns file text into plain values for the models and fails with a `KiroFileError`
naming the file, the entry and the field; rendering turns stored values back into the files.
No database work here: `credentials/services/kiro_rs.py` applies a parsed import in one transaction.

Fidelity rules (README "Import and export"):
- keys the source file spelled out are written back even when they hold a default, and
  timestamps keep their original spelling until their value changes, so an imported file
  comes back as equal JSON;
- unknown keys of a credential are kept and written back after the known ones;
- the value-changing normalisations are listed in `NORMALISATIONS` and in the README.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

NORMALISATIONS = (
    "a single-object credentials.json is exported as a one-element array (as Z does at start)",
    "authMethod aliases become canonical: builder-id/iam -> idc, apikey -> api_key, "
    "azuread/azure/entra/entra-id/microsoft/m365/office365/external -> external_idp",
    "a credential with a tokenEndpoint is external_idp whatever its authMethod says",
    "a missing authMethod is inferred (kiroApiKey -> api_key, clientId+clientSecret -> idc, "
    "else social) and written out",
    "a credential without an id gets max(id)+1 in file order",
    "an api_key credential without kiroApiKey is imported disabled with reason InvalidConfig",
    "an unknown disabledReason becomes Manual; a disabled entry without one gets Manual",
    "groups are trimmed and empty names dropped",
    "config.json is written with Z's full key set and order, null for unset optionals; "
    "unknown config keys are kept and written back after the known ones "
    "(both Rust projects drop them)",
)

MIN_REFRESH_TOKEN_LENGTH = 100  # spec kiro-ops §2.2 / feature 112

_AUTH_ALIASES = {
    "social": "social",
    "idc": "idc",
    "builder-id": "idc",
    "iam": "idc",
    "api_key": "api_key",
    "apikey": "api_key",
    **dict.fromkeys(
        (
            "external_idp",
            "azuread",
            "azure",
            "entra",
            "entra-id",
            "microsoft",
            "m365",
            "office365",
            "external",
        ),
        "external_idp",
    ),
}
_DISABLED_REASONS = {
    "Manual",
    "TooManyFailures",
    "TooManyRefreshFailures",
    "InvalidRefreshToken",
    "QuotaExceeded",
    "Suspended",
    "InvalidConfig",
}
_ENDPOINTS = {"ide", "cli"}
_ALLOWED_IDP_SUFFIXES = (".microsoftonline.com", ".microsoftonline.us", ".microsoftonline.cn")


class KiroFileError(ValueError):
    """A kiro-rs file that cannot be imported; the message names file, entry and field."""

    def __init__(
        self, file: str, message: str, *, entry: str | None = None, field: str | None = None
    ) -> None:
        self.file, self.entry, self.field, self.reason = file, entry, field, message
        where = file
        if entry is not None:
            where += f", {entry}"
        if field is not None:
            where += f", field {field!r}"
        super().__init__(f"{where}: {message}")


# --- value kinds -------------------------------------------------------------------------


def parse_timestamp(text: str) -> datetime:
    """Parse an RFC 3339 timestamp as kiro-rs writes it (chrono, nanoseconds allowed)."""
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value


def format_timestamp(value: datetime) -> str:
    """Format like chrono's RFC 3339 output: UTC with a `+00:00` offset."""
    return value.astimezone(UTC).isoformat()


@dataclass(frozen=True, slots=True)
class _Key:
    json: str
    attr: str
    kind: str  # str | secret | int | bool | time | groups | disabled
    omit_default: Any = None  # value that is left out of the export unless spelled out


# spec kiro-ops §2.2, Z's serialisation order.
CREDENTIAL_KEYS: tuple[_Key, ...] = (
    _Key("id", "id", "int"),
    _Key("accessToken", "access_token", "secret"),
    _Key("refreshToken", "refresh_token", "secret"),
    _Key("profileArn", "profile_arn", "str"),
    _Key("expiresAt", "expires_at", "time"),
    _Key("authMethod", "auth_method", "str"),
    _Key("provider", "provider", "str"),
    _Key("clientId", "client_id", "str"),
    _Key("clientSecret", "client_secret", "secret"),
    _Key("startUrl", "start_url", "str"),
    _Key("tokenEndpoint", "token_endpoint", "str"),
    _Key("issuerUrl", "issuer_url", "str"),
    _Key("scopes", "scopes", "str"),
    _Key("priority", "priority", "int", omit_default=0),
    _Key("region", "region", "str"),
    _Key("authRegion", "auth_region", "str"),
    _Key("apiRegion", "api_region", "str"),
    _Key("machineId", "machine_id", "str"),
    _Key("email", "email", "str"),
    _Key("subscriptionTitle", "subscription_title", "str"),
    _Key("proxyUrl", "proxy_url", "str"),
    _Key("proxyUsername", "proxy_username", "str"),
    _Key("proxyPassword", "proxy_password", "secret"),
    _Key("disabled", "enabled", "disabled"),
    _Key("disabledReason", "disabled_reason", "str"),
    _Key("selfHealConsecutiveRounds", "self_heal_rounds", "int", omit_default=0),
    _Key("selfHealTotalCount", "self_heal_total", "int", omit_default=0),
    _Key("lastSelfHealAt", "last_self_heal_at", "time"),
    _Key("selfHealModel", "self_heal_model", "str"),
    _Key("kiroApiKey", "kiro_api_key", "secret"),
    _Key("endpoint", "endpoint", "str"),
    _Key("groups", "groups", "groups"),
    _Key("sourceChannel", "source_channel", "str"),
    _Key("createdAt", "kiro_created_at", "time"),
)
_CREDENTIAL_KEYS_BY_JSON = {k.json: k for k in CREDENTIAL_KEYS}


@dataclass(slots=True)
class ParsedCredential:
    """One credentials.json entry as model values, plus what export needs to write it back."""

    index: int
    values: dict[str, Any]
    groups: list[str]
    unknown: dict[str, Any]
    present: list[str]
    spelling: dict[str, str]
    rules: list[str] = field(default_factory=list)

    @property
    def kiro_extra(self) -> dict[str, Any]:
        return {
            "unknown": self.unknown,
            "present": self.present,
            "spelling": self.spelling,
            "group_order": self.groups,
        }


def _label(index: int, raw: Mapping[str, Any]) -> str:
    ident = raw.get("id")
    return f"entry {index}" + (f" (id {ident})" if isinstance(ident, int) else "")


def _coerce(file: str, entry: str, key: _Key, value: Any) -> Any:
    """Check one known key's JSON value and return it as a model value."""
    if value is None:
        return None

    def fail(expected: str) -> KiroFileError:
        return KiroFileError(
            file, f"expected {expected}, got {value!r:.60}", entry=entry, field=key.json
        )

    if key.kind in ("str", "secret"):
        if not isinstance(value, str):
            raise fail("a string")
        return value
    if key.kind == "int":
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise fail("a non-negative integer")
        return value
    if key.kind == "disabled":
        if not isinstance(value, bool):
            raise fail("true or false")
        return not value
    if key.kind == "time":
        if not isinstance(value, str):
            raise fail("an RFC 3339 timestamp")
        try:
            return parse_timestamp(value)
        except ValueError:
            raise fail("an RFC 3339 timestamp") from None
    if key.kind == "groups":
        if not isinstance(value, list) or not all(isinstance(g, str) for g in value):
            raise fail("a list of group names")
        groups = [g.strip() for g in value if g.strip()]
        for name in groups:
            if len(name) > 64:
                raise KiroFileError(
                    file,
                    f"group name {name!r:.70} is longer than 64 characters",
                    entry=entry,
                    field=key.json,
                )
        return groups
    raise AssertionError(key.kind)


def canonical_auth_method(raw: Mapping[str, Any], declared: str | None) -> str:
    """Return the canonical authMethod (spec kiro-ops §2.3)."""
    if raw.get("tokenEndpoint"):
        return "external_idp"
    if declared:
        canonical = _AUTH_ALIASES.get(declared.strip().lower())
        if canonical:
            return canonical
    if raw.get("kiroApiKey"):
        return "api_key"
    if declared is None and raw.get("clientId") and raw.get("clientSecret"):
        return "idc"
    return "social"


def validate_token_endpoint(url: str) -> str | None:
    """Return why an external-IdP token endpoint is refused, or None (spec kiro-ops §2.2)."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if parts.scheme != "https":
        return "must be an https URL"
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return "must name a host, not an IP address"
    if not host.endswith(_ALLOWED_IDP_SUFFIXES):
        return "must be on login.microsoftonline.com (.com, .us or .cn)"
    return None


def refresh_token_problem(token: str) -> str | None:
    """Return why a refresh token looks truncated, or None (spec kiro-ops feature 112)."""
    if len(token) < MIN_REFRESH_TOKEN_LENGTH:
        return f"looks truncated: shorter than {MIN_REFRESH_TOKEN_LENGTH} characters"
    if "..." in token:
        return "looks truncated: contains '...'"
    return None


def parse_credentials(
    text: str, file: str = "credentials.json"
) -> tuple[list[ParsedCredential], bool]:
    """Parse credentials.json; return the entries and whether the file was a single object."""
    if not text.strip():
        return [], False  # spec kiro-ops §2.1: empty file means no credentials
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise KiroFileError(file, f"not valid JSON ({exc})") from None
    single = isinstance(data, dict)
    if single:
        data = [data]
    if not isinstance(data, list):
        raise KiroFileError(file, "expected a credential object or an array of them")

    parsed: list[ParsedCredential] = []
    seen_ids: dict[int, str] = {}
    seen_tokens: dict[str, str] = {}
    for index, raw in enumerate(data):
        if not isinstance(raw, dict):
            raise KiroFileError(file, "expected a JSON object", entry=f"entry {index}")
        entry = _label(index, raw)
        item = _parse_credential(file, index, entry, raw)
        ident = item.values.get("id")
        if ident is not None:
            if ident in seen_ids:
                raise KiroFileError(
                    file,
                    f"duplicate credential id {ident} (also {seen_ids[ident]})",
                    entry=entry,
                    field="id",
                )
            seen_ids[ident] = entry
        for secret_key in ("refresh_token", "kiro_api_key"):
            secret = item.values.get(secret_key)
            if secret:
                if secret in seen_tokens:
                    json_key = "refreshToken" if secret_key == "refresh_token" else "kiroApiKey"
                    raise KiroFileError(
                        file, f"same token as {seen_tokens[secret]}", entry=entry, field=json_key
                    )
                seen_tokens[secret] = entry
        parsed.append(item)
    return parsed, single


def _parse_credential(file: str, index: int, entry: str, raw: dict[str, Any]) -> ParsedCredential:
    values: dict[str, Any] = {}
    unknown: dict[str, Any] = {}
    spelling: dict[str, str] = {}
    groups: list[str] = []
    rules: list[str] = []
    for json_key, value in raw.items():
        key = _CREDENTIAL_KEYS_BY_JSON.get(json_key)
        if key is None:
            unknown[json_key] = value
            continue
        coerced = _coerce(file, entry, key, value)
        if key.kind == "groups":
            groups = coerced or []
            continue
        if (key.kind == "time" and coerced is not None) or value is None or value == "":
            spelling[json_key] = value  # written back verbatim while the value is unchanged
        values[key.attr] = coerced

    declared = values.get("auth_method")
    method = canonical_auth_method(raw, declared)
    if declared != method:
        rules.append("auth_method_normalised")
    values["auth_method"] = method

    refresh = values.get("refresh_token")
    if refresh:
        problem = refresh_token_problem(refresh)
        if problem:
            raise KiroFileError(file, problem, entry=entry, field="refreshToken")
    if method in ("social", "idc") and not refresh:
        raise KiroFileError(
            file, f"a {method} credential needs a refresh token", entry=entry, field="refreshToken"
        )
    if method == "idc" and not (values.get("client_id") and values.get("client_secret")):
        raise KiroFileError(
            file, "an idc credential needs clientId and clientSecret", entry=entry, field="clientId"
        )
    if method == "external_idp":
        endpoint = values.get("token_endpoint")
        if not endpoint or not values.get("client_id") or not refresh:
            raise KiroFileError(
                file,
                "an external_idp credential needs tokenEndpoint, clientId and refreshToken",
                entry=entry,
                field="tokenEndpoint",
            )
        for url_key, attr in (("tokenEndpoint", "token_endpoint"), ("issuerUrl", "issuer_url")):
            url = values.get(attr)
            problem = url and validate_token_endpoint(url)
            if problem:
                raise KiroFileError(file, problem, entry=entry, field=url_key)

    endpoint_name = values.get("endpoint")
    if endpoint_name is not None and endpoint_name not in _ENDPOINTS:
        raise KiroFileError(
            file,
            f"unknown endpoint {endpoint_name!r}; expected ide or cli",
            entry=entry,
            field="endpoint",
        )

    enabled = values.get("enabled", True)
    reason = values.get("disabled_reason")
    if reason is not None and reason not in _DISABLED_REASONS:
        values["disabled_reason"] = "Manual"  # spec kiro-ops §2.2: unknown reason -> Manual
        rules.append("disabled_reason_normalised")
    if method == "api_key" and not values.get("kiro_api_key"):
        # spec kiro-ops §2.3: disabled at load with InvalidConfig; kept so the file round-trips.
        enabled = False
        values["disabled_reason"] = "InvalidConfig"
        rules.append("api_key_without_key_disabled")
    if not enabled and not values.get("disabled_reason"):
        values["disabled_reason"] = "Manual"
    if enabled:
        values["disabled_reason"] = values.get("disabled_reason") or None
    values["enabled"] = enabled

    return ParsedCredential(
        index=index,
        values=values,
        groups=groups,
        unknown=unknown,
        present=list(raw.keys()),
        spelling=spelling,
        rules=rules,
    )


def render_credential(
    values: Mapping[str, Any], groups: list[str], kiro_extra: Mapping[str, Any]
) -> dict[str, Any]:
    """Build one credentials.json entry from stored values (Z order, omit rules of §2.2)."""
    present = set(kiro_extra.get("present") or ())
    spelling: Mapping[str, Any] = kiro_extra.get("spelling") or {}
    out: dict[str, Any] = {}
    for key in CREDENTIAL_KEYS:
        if key.kind == "groups":
            if groups or key.json in present:
                out[key.json] = _ordered_groups(groups, kiro_extra.get("group_order") or [])
            continue
        value = values.get(key.attr)
        if key.kind == "disabled":
            out[key.json] = not value  # spec kiro-ops §2.2: disabled is always written
            continue
        if key.json in spelling and _same_value(key, spelling[key.json], value):
            out[key.json] = spelling[key.json]  # unchanged since import: keep its spelling
            continue
        if value is None or value == "":
            continue  # spec kiro-ops §2.2: omitted when null
        if key.omit_default is not None and value == key.omit_default and key.json not in present:
            continue
        out[key.json] = format_timestamp(value) if key.kind == "time" else value
    for json_key, value in (kiro_extra.get("unknown") or {}).items():
        out.setdefault(json_key, value)
    return out


def _ordered_groups(groups: list[str], order: list[str]) -> list[str]:
    """Keep the file's group order; groups added later follow, sorted."""
    rank = {name: position for position, name in enumerate(order)}
    return sorted(groups, key=lambda name: (rank.get(name, len(rank)), name))


def _same_value(key: _Key, raw: Any, value: Any) -> bool:
    if raw is None or raw == "":
        return value is None or value == ""
    if key.kind == "time":
        try:
            return parse_timestamp(raw) == value
        except (TypeError, ValueError):
            return False
    return raw == value


def dump_json(data: Any) -> str:
    """Serialise like serde_json's pretty printer: 2-space indent, no trailing newline."""
    return json.dumps(data, indent=2, ensure_ascii=False)
