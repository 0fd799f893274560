"""Turn a getUsageLimits answer into a balance (spec kiro-protocol §9.3, kiro-ops §8.1).

Z's maths: the remaining amount may go negative and the percentage past 100 (overage debt).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypedDict

OVERAGE_CAPABLE = "OVERAGE_CAPABLE"
NOT_CAPABLE = ("NOT_OVERAGE_CAPABLE", "NOT_AVAILABLE")


class Balance(TypedDict):
    """A credential's balance as stored on the row and shown in the admin (JSON-able)."""

    subscription_title: str
    current_usage: float
    usage_limit: float
    remaining: float
    usage_percentage: float
    next_reset_at: float | None
    overage_enabled: bool | None
    overage_capable: bool | None
    overage_capability_raw: str
    overage_status: str
    email: str


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0.0
    return float(value)


def _dict(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _str(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def overage_capable(raw: str) -> bool | None:
    """Map subscriptionInfo.overageCapability to capable / not capable / unknown (§8.1)."""
    if raw == OVERAGE_CAPABLE:
        return True
    if raw in NOT_CAPABLE:
        return False
    return None


def _overage_enabled(config: Mapping[str, Any]) -> tuple[bool | None, str]:
    status = _str(config.get("overageStatus")).upper()
    flag = config.get("overageEnabled")
    if isinstance(flag, bool):
        return flag, status or ("ENABLED" if flag else "DISABLED")
    if status:
        return status == "ENABLED", status
    return None, ""


def parse_usage_limits(data: Mapping[str, Any]) -> Balance:
    """Compute used, limit, remaining and percentage from usageBreakdownList[0] (spec §9.3)."""
    breakdowns = data.get("usageBreakdownList")
    first = _dict(breakdowns[0]) if isinstance(breakdowns, list) and breakdowns else {}
    limit = _number(first.get("usageLimitWithPrecision"))
    used = _number(first.get("currentUsageWithPrecision"))
    trial = _dict(first.get("freeTrialInfo"))
    if _str(trial.get("freeTrialStatus")) == "ACTIVE":
        limit += _number(trial.get("usageLimitWithPrecision"))
        used += _number(trial.get("currentUsageWithPrecision"))
    bonuses = first.get("bonuses")
    for bonus in bonuses if isinstance(bonuses, list) else []:
        bonus = _dict(bonus)
        if _str(bonus.get("status")) == "ACTIVE":
            limit += _number(bonus.get("usageLimit"))
            used += _number(bonus.get("currentUsage"))
    reset = data.get("nextDateReset", first.get("nextDateReset"))
    subscription = _dict(data.get("subscriptionInfo"))
    capability = _str(subscription.get("overageCapability"))
    enabled, status = _overage_enabled(_dict(data.get("overageConfiguration")))
    return Balance(
        subscription_title=_str(subscription.get("subscriptionTitle")),
        current_usage=round(used, 4),
        usage_limit=round(limit, 4),
        remaining=round(limit - used, 4),
        usage_percentage=round(used / limit * 100, 2) if limit > 0 else 0.0,
        next_reset_at=_number(reset) if isinstance(reset, int | float) else None,
        overage_enabled=enabled,
        overage_capable=overage_capable(capability),
        overage_capability_raw=capability,
        overage_status=status,
        email=_str(_dict(data.get("userInfo")).get("email")),
    )


def is_exhausted(balance: Mapping[str, Any]) -> bool:
    """Return whether a balance shows remaining <= 0 or >= 100 % used (spec kiro-ops #125)."""
    return _number(balance.get("remaining")) <= 0 or _number(balance.get("usage_percentage")) >= 100
