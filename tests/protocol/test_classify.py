"""The classification table of spec kiro-protocol §7.2 (Z's rows) as a pure function."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from gateway.protocol.classify import (
    Action,
    Outcome,
    backoff_seconds,
    classify,
    is_quota_exhausted,
    parse_retry_after,
)

QUOTA = '{"message":"You have reached the limit.","reason":"MONTHLY_REQUEST_COUNT"}'
BEARER = '{"message":"The bearer token included in the request is invalid."}'
SUSPENDED = (
    '{"message":"Your User ID (1) temporarily is suspended. We\'ve locked your account '
    'as a security precaution.","reason":null}'
)
THROTTLED = (
    '{"message":"Due to suspicious activity, we are imposing temporary limits on how '
    'frequently your account can send a request","reason":null}'
)


@pytest.mark.parametrize(
    ("status", "body", "outcome", "action"),
    [
        (200, "", Outcome.SUCCESS, Action.SUCCESS),
        (402, QUOTA, Outcome.QUOTA_EXHAUSTED, Action.SWITCH),
        (402, '{"reason":"OTHER"}', Outcome.BAD_REQUEST, Action.FAIL),
        (
            400,
            '{"message":"Improperly formed request.","reason":null}',
            Outcome.BAD_REQUEST,
            Action.FAIL,
        ),
        (500, '{"reason":"TOOL_USE_RESULT_MISMATCH"}', Outcome.BAD_REQUEST, Action.FAIL),
        (403, SUSPENDED, Outcome.ACCOUNT_SUSPENDED, Action.SWITCH),
        (403, BEARER, Outcome.AUTH_FAILED, Action.FORCE_REFRESH),
        (401, '{"message":"nope"}', Outcome.AUTH_FAILED, Action.SWITCH),
        (429, THROTTLED, Outcome.ACCOUNT_THROTTLED, Action.SWITCH),
        (524, "", Outcome.TRANSIENT, Action.FAIL),
        (502, "status code 524 gateway timeout", Outcome.TRANSIENT, Action.FAIL),
        (429, '{"reason":"SERVICE_REQUEST_RATE_EXCEEDED"}', Outcome.TRANSIENT, Action.RETRY),
        (408, "", Outcome.TRANSIENT, Action.RETRY),
        (503, "", Outcome.TRANSIENT, Action.RETRY),
        (404, "", Outcome.BAD_REQUEST, Action.FAIL),
        (302, "", Outcome.UNKNOWN, Action.RETRY),
    ],
)
def test_it_classifies_each_row(status, body, outcome, action):
    verdict = classify(status, body)

    assert (verdict.outcome, verdict.action) == (outcome, action)


def test_a_second_bearer_invalid_counts_as_a_failure():
    verdict = classify(403, BEARER, already_forced_refresh=True)

    assert (verdict.action, verdict.count_failure) == (Action.SWITCH, True)


def test_suspension_detection_can_be_turned_off():
    assert classify(403, SUSPENDED, suspended_detection=False).disable_reason is None


def test_throttle_failover_off_treats_the_429_as_transient():
    assert classify(429, THROTTLED, throttle_failover=False).action == Action.RETRY


def test_a_throttle_with_retry_after_fails_at_once_with_it():
    verdict = classify(429, THROTTLED, retry_after="42")

    assert verdict.action == Action.FAIL and verdict.error.retry_after == 42


def test_the_quota_detector_needs_the_json_reason_to_match():
    assert is_quota_exhausted(QUOTA)
    assert not is_quota_exhausted('{"reason":"X","message":"MONTHLY_REQUEST_COUNT"}')
    assert is_quota_exhausted("plain text MONTHLY_REQUEST_COUNT")


def test_an_upstream_400_becomes_a_400_naming_the_problem():
    verdict = classify(400, '{"message":"profileArn is required for this request."}')

    assert verdict.error.status == 400
    assert "profileArn is required" in verdict.error.message


def test_retry_after_accepts_seconds_and_http_dates():
    now = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)

    assert parse_retry_after("7") == 7
    assert parse_retry_after("Mon, 23 Nov 2026 12:00:30 GMT", now=now) == 30
    assert parse_retry_after("soon") is None


@pytest.mark.parametrize(("attempt", "low", "high"), [(0, 0.2, 0.25), (2, 0.8, 1.0), (9, 2.0, 2.5)])
def test_backoff_follows_spec_7_3(attempt, low, high):
    rng = random.Random(1)
    for _ in range(50):
        assert low <= backoff_seconds(attempt, rng=rng) <= high


def test_the_429_backoff_is_longer():
    assert 8.0 <= backoff_seconds(5, throttle=True, rng=random.Random(2)) <= 10.0
