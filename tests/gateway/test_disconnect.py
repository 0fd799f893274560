"""A client that goes away mid-stream cancels the upstream call and leaves one record."""

from __future__ import annotations

import time

import httpx
import pytest

from gateway.fakekiro.script import Script
from usage.models import UsageRecord

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_client_disconnect_is_recorded_as_interrupted(gateway):
    _, account = gateway.add_credential()
    gateway.fake.script(Script.slow("word " * 40, chunks=40, pace=0.1), account=account.id)
    body = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 64,
        "stream": True,
        "messages": [{"role": "user", "content": "talk slowly"}],
    }

    with (
        httpx.Client(timeout=30) as client,
        client.stream(
            "POST", gateway.base_url + "/v1/messages", json=body, headers={"x-api-key": gateway.key}
        ) as response,
    ):
        first = next(response.iter_raw())
    assert b"message_start" in first

    deadline = time.monotonic() + 10
    while not UsageRecord.objects.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    record = UsageRecord.objects.get()
    assert record.status == "interrupted"
    assert record.error_type == "client_disconnected"
    assert record.latency_ms < 3000  # the 4 s upstream stream was cut short
    assert [a.outcome for a in record.attempts.all()] == ["success"]


def test_a_client_leaving_before_the_upstream_answers_still_leaves_one_record(gateway):
    _, account = gateway.add_credential()
    gateway.fake.script(Script.text("late").delayed(3), account=account.id)
    body = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 64,
        "stream": True,
        "messages": [{"role": "user", "content": "hello?"}],
    }

    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            gateway.base_url + "/v1/messages",
            json=body,
            timeout=1,
            headers={"x-api-key": gateway.key},
        )

    deadline = time.monotonic() + 10
    while not UsageRecord.objects.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    record = UsageRecord.objects.get()
    assert (record.status, record.error_type) == ("interrupted", "client_disconnected")


def test_a_client_leaving_during_authentication_still_leaves_one_record(gateway, monkeypatch):
    """count_tokens and /v1/models authenticate in views._start."""
    import asyncio

    from django.test import RequestFactory

    from gateway.api import views

    real = views._authenticate

    def slow(*args: object) -> object:
        found = real(*args)
        time.sleep(0.3)  # the client leaves before the trip returns
        return found

    monkeypatch.setattr(views, "_authenticate", slow)
    request = RequestFactory().post(
        "/v1/messages/count_tokens",
        data={"model": "claude-sonnet-4-5", "messages": []},
        content_type="application/json",
        HTTP_X_API_KEY=gateway.key,
    )

    async def scenario() -> None:
        task = asyncio.ensure_future(views.count_tokens(request))
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())

    record = UsageRecord.objects.get()
    assert (record.status, record.error_type) == ("interrupted", "client_disconnected")
    assert record.endpoint == "/v1/messages/count_tokens"
    assert record.client_key is not None
