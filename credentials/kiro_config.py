"""kiro-rs `config.json`: its keys, their parsing into GatewaySettings values and the file
written back (spec kiro-ops §1). `credentials.kiro_files` does `credentials.json`."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from credentials.kiro_files import KiroFileError


@dataclass(frozen=True, slots=True)
class _ConfigKey:
    json: str
    attr: str
    kind: str  # str | secret | int | bool | enum | object | list
    optional: bool = False  # written as null when unset
    omit_unset: bool = False  # left out when unset (authRegion, apiRegion)
    choices: tuple[str, ...] = ()
    bounds: tuple[int, int] | None = None


# spec kiro-ops §1.5, Z's field order.
CONFIG_KEYS: tuple[_ConfigKey, ...] = (
    _ConfigKey("host", "host", "str"),
    _ConfigKey("port", "port", "int", bounds=(0, 65535)),
    _ConfigKey("region", "region", "str"),
    _ConfigKey("authRegion", "auth_region", "str", omit_unset=True),
    _ConfigKey("apiRegion", "api_region", "str", omit_unset=True),
    _ConfigKey("kiroVersion", "kiro_version", "str"),
    _ConfigKey("machineId", "machine_id", "str", optional=True),
    _ConfigKey("apiKey", "api_key", "secret", optional=True),
    _ConfigKey("systemVersion", "system_version", "str"),
    _ConfigKey("nodeVersion", "node_version", "str"),
    _ConfigKey("tlsBackend", "tls_backend", "enum", choices=("rustls", "native-tls")),
    _ConfigKey("countTokensApiUrl", "count_tokens_api_url", "str", optional=True),
    _ConfigKey("countTokensApiKey", "count_tokens_api_key", "secret", optional=True),
    _ConfigKey(
        "countTokensAuthType", "count_tokens_auth_type", "enum", choices=("x-api-key", "bearer")
    ),
    _ConfigKey("proxyUrl", "proxy_url", "str", optional=True),
    _ConfigKey("proxyUsername", "proxy_username", "str", optional=True),
    _ConfigKey("proxyPassword", "proxy_password", "secret", optional=True),
    _ConfigKey("adminApiKey", "admin_api_key", "secret", optional=True),
    _ConfigKey("updatePreviousVersion", "update_previous_version", "str", optional=True),
    _ConfigKey("githubToken", "github_token", "secret", optional=True),
    _ConfigKey("updateLastAppliedAt", "update_last_applied_at", "str", optional=True),
    _ConfigKey("updateAutoApply", "update_auto_apply", "bool"),
    _ConfigKey("updateAutoApplyTime", "update_auto_apply_time", "str"),
    _ConfigKey(
        "loadBalancingMode", "load_balancing_mode", "enum", choices=("priority", "balanced")
    ),
    _ConfigKey("accountThrottleFailover", "account_throttle_failover", "bool"),
    _ConfigKey(
        "accountThrottleCooldownSecs", "account_throttle_cooldown_secs", "int", bounds=(1, 86400)
    ),
    _ConfigKey("accountRpmLimitEnabled", "account_rpm_limit_enabled", "bool"),
    _ConfigKey("accountRpmLimit", "account_rpm_limit", "int", bounds=(1, 100000)),
    _ConfigKey("suspendedDetectionEnabled", "suspended_detection_enabled", "bool"),
    _ConfigKey("selfHealEnabled", "self_heal_enabled", "bool"),
    _ConfigKey("selfHealMinIntervalSecs", "self_heal_min_interval_secs", "int", bounds=(0, 86400)),
    _ConfigKey(
        "selfHealMaxConsecutiveRounds", "self_heal_max_consecutive_rounds", "int", bounds=(0, 1000)
    ),
    _ConfigKey("modelCacheTtlSecs", "model_cache_ttl_secs", "int", bounds=(0, 10**9)),
    _ConfigKey("extractThinking", "extract_thinking", "bool"),
    _ConfigKey(
        "toolCompatibilityMode", "tool_compatibility_mode", "enum", choices=("claude-code", "raw")
    ),
    _ConfigKey("defaultEndpoint", "default_endpoint", "enum", choices=("ide", "cli")),
    _ConfigKey("traceEnabled", "trace_enabled", "bool"),
    _ConfigKey("traceRetentionDays", "trace_retention_days", "int", bounds=(1, 365)),
    _ConfigKey("usageLogRetentionDays", "usage_log_retention_days", "int", bounds=(1, 365)),
    _ConfigKey("endpoints", "endpoints", "object"),
    _ConfigKey("customModels", "custom_models", "list"),
)
_CONFIG_KEYS_BY_JSON = {k.json: k for k in CONFIG_KEYS}

_CUSTOM_MODEL_KEYS: dict[str, Callable[[Any], bool]] = {
    "id": lambda v: isinstance(v, str) and bool(v.strip()),
    "backendId": lambda v: isinstance(v, str) and bool(v.strip()),
    "displayName": lambda v: v is None or isinstance(v, str),
    "contextWindow": lambda v: (
        v is None or (isinstance(v, int) and not isinstance(v, bool) and v > 0)
    ),
    "maxTokens": lambda v: v is None or (isinstance(v, int) and not isinstance(v, bool) and v > 0),
    "supportsReasoning": lambda v: v is None or isinstance(v, bool),
    "ownedBy": lambda v: v is None or isinstance(v, str),
}


def parse_config(text: str, file: str = "config.json") -> dict[str, Any]:
    """Parse config.json into GatewaySettings values; only keys present in the file appear."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise KiroFileError(file, f"not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise KiroFileError(file, "expected a JSON object")
    values: dict[str, Any] = {}
    unknown: dict[str, Any] = {}
    for json_key, value in data.items():
        key = _CONFIG_KEYS_BY_JSON.get(json_key)
        if key is None:
            # kiro.rs ignores them (§1.1); kept here, so that a key of a newer kiro.rs
            # survives the round trip, as a credential's do.
            unknown[json_key] = value
            continue
        values[key.attr] = _coerce_config(file, key, value)
    values["kiro_extra"] = {"unknown": unknown}
    if values.get("update_auto_apply_time") == "":
        values["update_auto_apply_time"] = "03:00"  # spec kiro-ops §1.1 [F]
    return values


# The kinds a JSON type check alone settles: (the Python type, what an error says it expects).
_JSON_TYPES: dict[str, tuple[type, str]] = {
    "str": (str, "a string"),
    "secret": (str, "a string"),
    "bool": (bool, "true or false"),
    "object": (dict, "an object"),
    "list": (list, "an array"),
}


def _coerce_config(file: str, key: _ConfigKey, value: Any) -> Any:
    def fail(expected: str) -> KiroFileError:
        return KiroFileError(file, f"expected {expected}, got {value!r:.60}", field=key.json)

    if value is None:
        if key.optional or key.omit_unset:
            return ""
        raise fail("a value (null is not allowed here)")
    if key.kind in _JSON_TYPES:
        python_type, expected = _JSON_TYPES[key.kind]
        if not isinstance(value, python_type):
            raise fail(expected)
        if key.kind == "list":
            _check_custom_models(file, value)
        return value
    if key.kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise fail("an integer")
        low, high = key.bounds or (0, 2**63)
        if not low <= value <= high:
            raise fail(f"an integer from {low} to {high}")
        return value
    if key.kind == "enum":
        if value not in key.choices:
            raise fail("one of " + ", ".join(key.choices))
        return value
    raise AssertionError(key.kind)


def _check_custom_models(file: str, models: list[Any]) -> None:
    for position, model in enumerate(models):
        if not isinstance(model, dict):
            raise KiroFileError(file, "expected an object", entry=f"customModels[{position}]")
        for name, check in _CUSTOM_MODEL_KEYS.items():
            if (name in model or name in ("id", "backendId")) and not check(model.get(name)):
                raise KiroFileError(
                    file,
                    "missing or invalid value",
                    entry=f"customModels[{position}]",
                    field=name,
                )


def render_config(values: Mapping[str, Any]) -> dict[str, Any]:
    """Build config.json from settings values with Z's key set and order (spec kiro-ops §1.5)."""
    out: dict[str, Any] = {}
    for key in CONFIG_KEYS:
        value = values.get(key.attr)
        if value in (None, ""):
            if key.omit_unset:
                continue
            if key.optional:
                out[key.json] = None
                continue
        out[key.json] = value
    for json_key, value in ((values.get("kiro_extra") or {}).get("unknown") or {}).items():
        out.setdefault(json_key, value)  # unknown keys after the known ones, as imported
    return out
