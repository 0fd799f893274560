"""A client key's lifetime totals through the live gateway: moved with the month's usage."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest
from django.db import connection
from django.db.models import F, Sum
from django.test.utils import CaptureQueriesContext

from credentials import limits
from credentials.models import ClientKey, ClientKeyWindow, LimitWindowKind
from gateway.api.accounting import store_usage
from tests.gateway.test_limits import BODY
from usage.models import UsageRecord
from usage.services import UsageDraft

pytestmark = pytest.mark.django_db(transaction=True)


def post(gateway, path: str = "/v1/messages") -> httpx.Response:
    return httpx.post(
        gateway.base_url + path, json=BODY, headers={"x-api-key": gateway.key}, timeout=30
    )


def the_test_key(**limit_values: object) -> ClientKey:
    ClientKey.objects.filter(name="test client").update(**limit_values)
    return ClientKey.objects.get(name="test client")


def _totals(key: ClientKey) -> limits.KeyTotals:
    return limits.totals_of(ClientKeyWindow.objects.get(client_key=key, kind=LimitWindowKind.MONTH))


def _sums(key: ClientKey) -> dict:
    return UsageRecord.objects.filter(client_key=key).aggregate(
        input_tokens=Sum(F("input_tokens") + F("cache_creation_tokens") + F("cache_read_tokens")),
        output_tokens=Sum("output_tokens"),
        credits=Sum("credits"),
        cached=Sum(F("cache_creation_tokens") + F("cache_read_tokens")),
    )


def test_the_lifetime_input_counts_the_cached_parts_of_the_prompt(gateway):
    """With prompt-cache metering the record splits the prompt into input, cache creation and
    cache read; the key's lifetime "in" figure is the whole prompt."""
    gateway.add_credential()
    key = the_test_key()
    long_system = [
        {
            "type": "text",
            "text": "House rules: " + "answer briefly. " * 400,
            "cache_control": {"type": "ephemeral"},
        }
    ]
    for question in ("one", "two"):
        body = {**BODY, "system": long_system, "messages": [{"role": "user", "content": question}]}
        answer = httpx.post(
            gateway.base_url + "/v1/messages",
            json=body,
            headers={"x-api-key": gateway.key},
            timeout=30,
        )
        assert answer.status_code == 200

    totals, sums = _totals(key), _sums(key)
    assert sums["cached"] > 1000
    assert totals.input_tokens == sums["input_tokens"]


def test_requests_through_the_gateway_move_the_keys_lifetime_totals(gateway):
    gateway.add_credential()
    key = the_test_key()

    assert [post(gateway).status_code for _ in range(3)] == [200, 200, 200]

    totals, sums = _totals(key), _sums(key)
    assert totals.requests == 3
    assert (totals.input_tokens, totals.output_tokens) == (
        sums["input_tokens"],
        sums["output_tokens"],
    )
    assert totals.output_tokens > 0
    assert totals.credits == pytest.approx(sums["credits"])
    assert totals.since is not None
    key.refresh_from_db()
    assert key.last_used_at is not None


def test_a_limited_key_moves_its_totals_as_well(gateway):
    gateway.add_credential()
    key = the_test_key(daily_token_budget=10_000_000, rpm_limit=100)

    assert [post(gateway).status_code for _ in range(2)] == [200, 200]

    assert _totals(key).requests == 2
    assert _totals(key).input_tokens == _sums(key)["input_tokens"]


def test_count_tokens_and_models_do_not_count_in_the_totals(gateway):
    gateway.add_credential()
    key = the_test_key()
    assert post(gateway).status_code == 200

    assert post(gateway, path="/v1/messages/count_tokens").status_code == 200
    models = httpx.get(gateway.base_url + "/v1/models", headers={"x-api-key": gateway.key})
    assert models.status_code == 200

    assert _totals(key).requests == 1


def test_the_totals_survive_the_month_rolling_over(gateway):
    gateway.add_credential()
    key = the_test_key()
    assert post(gateway).status_code == 200
    ClientKeyWindow.objects.filter(client_key=key).update(start=datetime(2020, 1, 1, tzinfo=UTC))

    assert post(gateway).status_code == 200

    month = ClientKeyWindow.objects.get(client_key=key, kind=LimitWindowKind.MONTH)
    assert (month.requests, month.total_requests) == (1, 2)


def test_the_totals_cost_no_statement_of_their_own(gateway):
    """Settling an unlimited key is one UPDATE per window, the totals riding on the month's."""
    key = the_test_key()
    limits.limit_settle(reservation=limits.Reservation(key.pk), tokens=1, credits=0.0)
    draft = UsageDraft(endpoint="/v1/messages", client_key_id=key.pk, input_tokens=5)

    with CaptureQueriesContext(connection) as queries:
        store_usage(draft, limits.Reservation(key.pk))

    windows = [q["sql"] for q in queries if "clientkeywindow" in q["sql"].lower()]
    assert len(windows) == 2, windows
    assert (_totals(key).requests, _totals(key).input_tokens) == (2, 5)
