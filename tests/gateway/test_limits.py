"""Client key limits through the live gateway: refusals, resets, concurrency, no leaks."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from credentials import limits
from credentials.models import ClientKey, ClientKeyWindow, LimitWindowKind
from credentials.selectors import KeyIdentity
from gateway.api import views
from gateway.fakekiro.script import Script
from tests.gateway.conftest import streaming
from usage.models import UsageRecord
from usage.services import UsageDraft

pytestmark = pytest.mark.django_db(transaction=True)

BODY = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 64,
    "messages": [{"role": "user", "content": "hi"}],
}


def _post(gateway, body: dict | None = None, path: str = "/v1/messages") -> httpx.Response:
    return httpx.post(
        gateway.base_url + path,
        json=body or BODY,
        headers={"x-api-key": gateway.key},
        timeout=30,
    )


def _key(**limit_values: object) -> ClientKey:
    ClientKey.objects.filter(name="test client").update(**limit_values)
    return ClientKey.objects.get(name="test client")


def _clock(monkeypatch, moment: datetime) -> None:
    monkeypatch.setattr(limits, "current_time", lambda: moment)


def _in_flight(key: ClientKey) -> int:
    return limits.limit_in_flight(key_id=key.pk)


def _day(key: ClientKey) -> ClientKeyWindow:
    return ClientKeyWindow.objects.get(client_key=key, kind=LimitWindowKind.DAY)


def test_the_request_over_the_rpm_limit_is_refused_until_the_minute_frees(gateway, monkeypatch):
    gateway.add_credential()
    key = _key(rpm_limit=2)
    now = datetime(2026, 5, 4, 10, 0, 0, tzinfo=UTC)
    _clock(monkeypatch, now)
    assert [_post(gateway).status_code for _ in range(2)] == [200, 200]

    _clock(monkeypatch, now + timedelta(seconds=45))
    refused = _post(gateway)

    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "15"
    assert refused.json()["error"]["type"] == "rate_limit_error"
    assert "2 requests per minute" in refused.json()["error"]["message"]
    record = UsageRecord.objects.order_by("-id").first()
    assert (record.status, record.http_status, record.error_type) == (
        "rejected",
        429,
        "key_rpm_limit",
    )
    assert record.client_key_id == key.pk
    _clock(monkeypatch, now + timedelta(seconds=61))
    assert _post(gateway).status_code == 200


def test_count_tokens_and_models_do_not_count_toward_the_rpm_limit(gateway):
    gateway.add_credential()
    _key(rpm_limit=1)

    for _ in range(3):
        assert _post(gateway, path="/v1/messages/count_tokens").status_code == 200
        assert (
            httpx.get(
                gateway.base_url + "/v1/models", headers={"x-api-key": gateway.key}
            ).status_code
            == 200
        )

    assert _post(gateway).status_code == 200


def test_a_used_up_daily_token_budget_is_refused_until_the_next_day(gateway, monkeypatch):
    gateway.add_credential()
    key = _key(daily_token_budget=1)
    now = datetime(2026, 5, 4, 22, 0, 0, tzinfo=UTC)
    _clock(monkeypatch, now)
    assert _post(gateway).status_code == 200  # alone, it may cross the budget

    refused = _post(gateway)

    assert refused.status_code == 429
    message = refused.json()["error"]["message"]
    assert "daily token budget" in message and "used up" in message
    assert "resets at 2026-05-05 00:00 UTC" in message
    assert refused.headers["Retry-After"] == str(2 * 3600)
    assert UsageRecord.objects.order_by("-id").first().error_type == "key_daily_token_budget"
    _clock(monkeypatch, now + timedelta(hours=2, seconds=1))
    assert _post(gateway).status_code == 200
    assert _day(key).requests == 1  # the new day's


def test_a_used_up_monthly_credit_budget_is_refused_until_the_next_month(gateway, monkeypatch):
    gateway.add_credential()
    key = _key(monthly_credit_budget=0.02)  # a fake answer costs 0.0169... credits
    now = datetime(2026, 5, 31, 12, 0, 0, tzinfo=UTC)
    _clock(monkeypatch, now)
    # The second request would cross, but nothing else is in flight: it is the one allowed.
    assert [_post(gateway).status_code for _ in range(2)] == [200, 200]

    refused = _post(gateway)

    assert refused.status_code == 429
    message = refused.json()["error"]["message"]
    assert "monthly credit budget" in message and "resets at 2026-06-01 00:00 UTC" in message
    assert refused.headers["Retry-After"] == str(12 * 3600)
    month = ClientKeyWindow.objects.get(client_key=key, kind=LimitWindowKind.MONTH)
    assert 0.02 <= month.credits < 0.02 + 0.017
    _clock(monkeypatch, datetime(2026, 6, 1, 0, 0, 1, tzinfo=UTC))
    assert _post(gateway).status_code == 200


def test_an_openai_request_is_limited_like_a_messages_request(gateway):
    gateway.add_credential()
    _key(rpm_limit=1)
    chat = {"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "hi"}]}

    assert _post(gateway, chat, "/v1/chat/completions").status_code == 200
    refused = _post(gateway, chat, "/v1/chat/completions")

    assert refused.status_code == 429
    assert "Retry-After" not in refused.headers or int(refused.headers["Retry-After"]) > 0
    assert refused.json()["error"]["type"] == "rate_limit_error"


# --- concurrency ---------------------------------------------------------------------------


async def _fire(urls: list[str], key: str, count: int) -> list[int]:
    async with httpx.AsyncClient(timeout=60) as client:
        responses = await asyncio.gather(
            *(
                client.post(
                    urls[i % len(urls)] + "/v1/messages", json=BODY, headers={"x-api-key": key}
                )
                for i in range(count)
            )
        )
    return [r.status_code for r in responses]


def fifty_concurrent_requests_stay_within_one_request(gateway, urls: list[str]) -> None:
    _, account = gateway.add_credential()
    # Answers take a quarter of a second, so that the admitted ones are in flight together.
    gateway.fake.script(Script.slow("word " * 10, chunks=5, pace=0.05), account=account.id)
    assert _post(gateway).status_code == 200  # learns what one request costs
    key = ClientKey.objects.get(name="test client")
    cost = _day(key).tokens
    assert cost > 0
    gateway.fake.script(
        Script.slow("word " * 10, chunks=5, pace=0.05), account=account.id, times=None
    )
    budget = cost + 5 * cost  # the warm-up and five more fit
    _key(daily_token_budget=budget)

    statuses = asyncio.run(_fire(urls, gateway.key, 50))

    successes = statuses.count(200)
    assert set(statuses) <= {200, 429}
    assert 1 <= successes <= 5 + 1
    day = _day(key)
    assert day.tokens == cost * (1 + successes)
    assert day.tokens <= budget + cost
    assert _in_flight(key) == 0
    assert UsageRecord.objects.filter(status="rejected", http_status=429).count() == 50 - successes


def test_fifty_concurrent_requests_in_one_process_never_overshoot_by_more_than_one(gateway):
    fifty_concurrent_requests_stay_within_one_request(gateway, [gateway.base_url])


def test_fifty_concurrent_requests_on_two_processes_never_overshoot_by_more_than_one(
    gateway, second_process
):
    fifty_concurrent_requests_stay_within_one_request(gateway, [gateway.base_url, second_process])


# --- every exit frees the reservation --------------------------------------------------------


def _learned(gateway) -> ClientKey:
    """Serve one request so the key's cost is known, then give it a roomy budget."""
    assert _post(gateway).status_code == 200
    return _key(daily_token_budget=10_000_000, rpm_limit=1000)


def test_a_client_disconnect_releases_the_reservation(gateway):
    _, account = gateway.add_credential()
    key = _learned(gateway)
    gateway.fake.script(Script.slow("word " * 40, chunks=40, pace=0.1), account=account.id)

    with streaming(
        gateway, "/v1/messages", {**BODY, "stream": True}, {"x-api-key": gateway.key}
    ) as response:
        # Hold the iterator: a discarded one is closed at once, and closing it closes the
        # connection, so the gateway could see the client leave before the check below.
        chunks = response.iter_raw()
        assert b"message_start" in next(chunks)
        assert _in_flight(key) == 1

    deadline = time.monotonic() + 10
    while _in_flight(key) and time.monotonic() < deadline:  # settled after the record
        time.sleep(0.05)
    assert _in_flight(key) == 0
    assert UsageRecord.objects.filter(status="interrupted").count() == 1
    assert _day(key).requests == 2


def test_an_upstream_failure_releases_the_reservation(gateway):
    _, account = gateway.add_credential()
    key = _learned(gateway)
    gateway.fake.script(Script.reset_after(3), account=account.id)

    response = _post(gateway)

    assert response.status_code == 502
    assert _in_flight(key) == 0


def test_a_request_with_no_credential_left_releases_the_reservation(gateway):
    credential, _ = gateway.add_credential()
    key = _learned(gateway)
    credential.__class__.objects.filter(pk=credential.pk).update(enabled=False)

    assert _post(gateway).status_code == 503
    assert _in_flight(key) == 0


def test_an_invalid_body_releases_the_reservation(gateway):
    gateway.add_credential()
    key = _learned(gateway)

    assert _post(gateway, {"model": "claude-sonnet-4-5", "max_tokens": -1}).status_code == 400
    assert _in_flight(key) == 0


def test_an_internal_error_releases_the_reservation_on_both_paths(gateway, monkeypatch):
    gateway.add_credential()
    key = _learned(gateway)

    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(views, "_serve_body", broken)
    chat = {"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "hi"}]}

    assert _post(gateway).status_code == 500
    assert _post(gateway, chat, "/v1/chat/completions").status_code == 500
    assert _in_flight(key) == 0
    # Each request still left exactly one record, which settled its reservation.
    failed = UsageRecord.objects.filter(error_type="internal_error")
    assert sorted(failed.values_list("endpoint", flat=True)) == [
        "/v1/chat/completions",
        "/v1/messages",
    ]


def test_a_cancelled_request_releases_the_reservation(gateway, monkeypatch):
    gateway.add_credential()
    key = _learned(gateway)
    identity = KeyIdentity(key.pk, key.name, None, False, limited=True)
    draft = UsageDraft(endpoint="/v1/messages", client_key_id=key.pk)

    async def hangs(*args: object, **kwargs: object) -> None:
        await asyncio.sleep(3600)  # waiting on the upstream when the client leaves

    monkeypatch.setattr(views, "_serve_body", hangs)

    async def scenario() -> int:
        task = asyncio.ensure_future(
            views.serve_body(dict(BODY), identity, None, draft, time.monotonic())
        )
        while draft.reservation is None:
            await asyncio.sleep(0.01)
        in_flight = await asyncio.to_thread(_in_flight, key)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return in_flight

    assert asyncio.run(scenario()) == 1
    assert _in_flight(key) == 0
    assert draft.reservation is None
    # The client left before a record was written: one interrupted record settled it.
    record = UsageRecord.objects.get(status="interrupted")
    assert record.error_type == "client_disconnected"


def test_a_failing_settle_still_writes_the_record(gateway, monkeypatch):
    """accounting.store_usage: the record must not be lost when the limits cannot be settled."""
    from gateway.api import accounting

    key = _key(rpm_limit=5)
    reservation = limits.limit_reserve(key_id=key.pk, estimate_tokens=10)

    def broken(**kwargs: object) -> None:
        raise RuntimeError("limits are down")

    monkeypatch.setattr(accounting, "limit_settle", broken)
    draft = UsageDraft(endpoint="/v1/messages", client_key_id=key.pk, status="success")

    record = accounting.store_usage(draft, reservation)

    assert UsageRecord.objects.get().pk == record.pk


def test_a_client_leaving_during_the_first_database_trip_leaves_one_record_and_no_hold(
    gateway, monkeypatch
):
    from django.test import RequestFactory

    gateway.add_credential()
    key = _key(daily_token_budget=1_000_000)
    real_begin = views._begin

    def slow_begin(*args: object) -> object:
        begun = real_begin(*args)  # the reservation is taken ...
        time.sleep(0.3)  # ... and the client leaves before the trip returns
        return begun

    monkeypatch.setattr(views, "_begin", slow_begin)
    request = RequestFactory().post(
        "/v1/messages", data=BODY, content_type="application/json", HTTP_X_API_KEY=gateway.key
    )

    async def scenario() -> None:
        task = asyncio.ensure_future(views.messages(request))
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())

    record = UsageRecord.objects.get()
    assert (record.status, record.error_type) == ("interrupted", "client_disconnected")
    assert record.client_key_id == key.pk
    assert _in_flight(key) == 0
