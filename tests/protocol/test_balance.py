"""getUsageLimits -> balance with Z's maths (spec kiro-protocol §9.3, kiro-ops §8.1)."""

from __future__ import annotations

import copy

import pytest

from gateway.protocol.balance import is_exhausted, overage_capable, parse_usage_limits

SPEC_EXAMPLE = {
    "nextDateReset": 1767225600.0,
    "subscriptionInfo": {"subscriptionTitle": "KIRO PRO+", "overageCapability": "OVERAGE_CAPABLE"},
    "overageConfiguration": {"overageStatus": "DISABLED"},
    "userInfo": {"email": "alice@example.com", "userId": "u-123"},
    "usageBreakdownList": [
        {
            "currentUsage": 120,
            "currentUsageWithPrecision": 120.53,
            "usageLimit": 2000,
            "usageLimitWithPrecision": 2000.0,
            "nextDateReset": 1767225600.0,
            "freeTrialInfo": {
                "freeTrialStatus": "ACTIVE",
                "freeTrialExpiry": 1767225600.0,
                "currentUsage": 12,
                "currentUsageWithPrecision": 12.0,
                "usageLimit": 500,
                "usageLimitWithPrecision": 500.0,
            },
            "bonuses": [{"status": "ACTIVE", "currentUsage": 3.0, "usageLimit": 100.0}],
        }
    ],
}


def example(**breakdown_changes: object) -> dict:
    data = copy.deepcopy(SPEC_EXAMPLE)
    data["usageBreakdownList"][0].update(breakdown_changes)
    return data


def test_it_adds_active_free_trial_and_bonuses_to_the_totals():
    balance = parse_usage_limits(SPEC_EXAMPLE)

    assert balance["usage_limit"] == 2600.0  # 2000 + 500 trial + 100 bonus
    assert balance["current_usage"] == 135.53  # 120.53 + 12 + 3
    assert balance["remaining"] == 2464.47
    assert balance["usage_percentage"] == 5.21
    assert balance["next_reset_at"] == 1767225600.0


def test_it_reads_title_email_and_overage():
    balance = parse_usage_limits(SPEC_EXAMPLE)

    assert balance["subscription_title"] == "KIRO PRO+"
    assert balance["email"] == "alice@example.com"
    assert balance["overage_capable"] is True
    assert balance["overage_enabled"] is False
    assert balance["overage_status"] == "DISABLED"


def test_it_ignores_an_expired_free_trial_and_inactive_bonuses():
    data = example(
        freeTrialInfo={
            "freeTrialStatus": "EXPIRED",
            "currentUsageWithPrecision": 12.0,
            "usageLimitWithPrecision": 500.0,
        },
        bonuses=[{"status": "EXPIRED", "currentUsage": 3.0, "usageLimit": 100.0}],
    )

    balance = parse_usage_limits(data)

    assert (balance["current_usage"], balance["usage_limit"]) == (120.53, 2000.0)


def test_it_keeps_negative_remaining_and_more_than_100_percent():
    data = example(
        currentUsageWithPrecision=2500.0,
        freeTrialInfo=None,
        bonuses=[],
        usageLimitWithPrecision=2000.0,
    )

    balance = parse_usage_limits(data)

    assert balance["remaining"] == -500.0
    assert balance["usage_percentage"] == 125.0
    assert is_exhausted(balance)


def test_it_reports_zero_percent_when_the_limit_is_zero():
    balance = parse_usage_limits({"usageBreakdownList": []})

    assert balance["usage_limit"] == 0.0
    assert balance["usage_percentage"] == 0.0
    assert balance["next_reset_at"] is None


def test_overage_enabled_flag_wins_over_status():
    data = example()
    data["overageConfiguration"] = {"overageEnabled": True}

    assert parse_usage_limits(data)["overage_enabled"] is True


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("OVERAGE_CAPABLE", True),
        ("NOT_OVERAGE_CAPABLE", False),
        ("NOT_AVAILABLE", False),
        ("SOMETHING_NEW", None),
        ("", None),
    ],
)
def test_overage_capability_maps_to_capable_not_capable_or_unknown(raw, expected):
    assert overage_capable(raw) is expected


@pytest.mark.parametrize(
    ("remaining", "percentage", "expected"),
    [(10.0, 99.5, False), (0.0, 100.0, True), (5.0, 100.0, True), (-1.0, 50.0, True)],
)
def test_exhausted_means_nothing_left_or_all_used(remaining, percentage, expected):
    assert is_exhausted({"remaining": remaining, "usage_percentage": percentage}) is expected
