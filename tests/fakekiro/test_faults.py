"""Scripted faults answer with the exact statuses and bodies of spec §7.4."""

from __future__ import annotations

import pytest

from gateway.fakekiro import Script
from gateway.fakekiro.server import FakeKiroThread
from tests.fakekiro.builders import chat

CASES = [
    (
        Script.quota_exhausted(),
        402,
        b'{"message":"You have reached the limit.","reason":"MONTHLY_REQUEST_COUNT"}',
    ),
    (
        Script.overage_exhausted(),
        402,
        b'{"message":"You have reached the limit for overages.",'
        b'"reason":"OVERAGE_REQUEST_LIMIT_EXCEEDED"}',
    ),
    (
        Script.bearer_invalid(),
        403,
        b'{"message":"The bearer token included in the request is invalid."}',
    ),
    (
        Script.bearer_invalid(401),
        401,
        b'{"message":"The bearer token included in the request is invalid."}',
    ),
    (
        Script.improperly_formed(),
        400,
        b'{"message":"Improperly formed request.","reason":null}',
    ),
    (
        Script.tool_schema_invalid(),
        400,
        b'{"__type":"ValidationException","message":"input_schema does not support oneOf, '
        b'allOf, or anyOf at the top level","reason":"TOOL_SCHEMA_INVALID"}',
    ),
    (
        Script.profile_arn_required(),
        400,
        b'{"message":"profileArn is required for this request."}',
    ),
]


@pytest.mark.parametrize(("script", "status", "body"), CASES, ids=[c[0].label for c in CASES])
def test_it_answers_verbatim_spec_bodies(
    fake_kiro: FakeKiroThread, script: Script, status: int, body: bytes
) -> None:
    account = fake_kiro.add_account()
    fake_kiro.script(script)

    response = chat(fake_kiro, account.access_token or "")

    assert response.status_code == status
    assert response.content == body
    assert response.headers["content-type"] == "application/json"


# Each detector of §7.4 must fire on the body the fake sends for that row.
def _quota(body: str) -> bool:
    return "MONTHLY_REQUEST_COUNT" in body or "OVERAGE_REQUEST_LIMIT_EXCEEDED" in body


DETECTORS = [
    (
        Script.suspended(),
        403,
        lambda b: "suspended" in b.lower() and "locked your account" in b.lower(),
    ),
    (Script.throttled(), 429, lambda b: "suspicious activity" in b and "temporary limits" in b),
    (Script.content_length_exceeded(), 400, lambda b: "CONTENT_LENGTH_EXCEEDS_THRESHOLD" in b),
    (Script.input_too_long(), 400, lambda b: "Input is too long" in b),
    (Script.tool_use_result_mismatch(), 400, lambda b: "TOOL_USE_RESULT_MISMATCH" in b),
    (
        Script.gateway_timeout(),
        524,
        lambda b: "524" in b and ("status code" in b.lower() or "gateway timeout" in b.lower()),
    ),
    (Script.server_error(500), 500, lambda b: "unexpected error" in b),
    (Script.server_error(503), 503, lambda b: "unavailable" in b),
]


@pytest.mark.parametrize(
    ("script", "status", "detector"), DETECTORS, ids=[d[0].label + str(d[1]) for d in DETECTORS]
)
def test_it_answers_bodies_that_trip_their_detector(
    fake_kiro: FakeKiroThread, script: Script, status: int, detector: object
) -> None:
    account = fake_kiro.add_account()
    fake_kiro.script(script)

    response = chat(fake_kiro, account.access_token or "")

    assert response.status_code == status
    assert detector(response.text)  # type: ignore[operator]
    assert not _quota(response.text)


def test_it_sends_retry_after_only_when_asked(fake_kiro: FakeKiroThread) -> None:
    account = fake_kiro.add_account()
    fake_kiro.script(Script.rate_limited(retry_after=7), Script.rate_limited())

    first = chat(fake_kiro, account.access_token or "")
    second = chat(fake_kiro, account.access_token or "")

    assert (first.status_code, first.headers.get("retry-after")) == (429, "7")
    assert (second.status_code, second.headers.get("retry-after")) == (429, None)
    assert "suspicious" not in second.text


def test_it_serves_scripts_in_order_then_falls_back_to_the_echo(fake_kiro: FakeKiroThread) -> None:
    account = fake_kiro.add_account()
    fake_kiro.script(Script.server_error(500), Script.server_error(502))

    statuses = [chat(fake_kiro, account.access_token or "").status_code for _ in range(3)]

    assert statuses == [500, 502, 200]


def test_it_prefers_the_account_queue_over_the_global_one(fake_kiro: FakeKiroThread) -> None:
    first = fake_kiro.add_account("first")
    second = fake_kiro.add_account("second")
    fake_kiro.script(Script.quota_exhausted(), account="first", times=None)
    fake_kiro.script(Script.server_error(500))

    a1 = chat(fake_kiro, first.access_token or "")
    a2 = chat(fake_kiro, first.access_token or "")
    b1 = chat(fake_kiro, second.access_token or "")
    b2 = chat(fake_kiro, second.access_token or "")

    assert [a1.status_code, a2.status_code, b1.status_code, b2.status_code] == [402, 402, 500, 200]


def test_it_answers_524_with_its_reason_phrase(fake_kiro: FakeKiroThread) -> None:
    account = fake_kiro.add_account()
    fake_kiro.script(Script.gateway_timeout())

    response = chat(fake_kiro, account.access_token or "")

    assert response.reason_phrase == "A Timeout Occurred"
