"""The OpenAI endpoints check in the order of every endpoint, and record every request (§12).

The key first (401, before anything is read from the body and before any stream head), then
the size (413), then the body (400, naming the field as `param`), then the key's limits (429):
each refusal is OpenAI error JSON, never a stream, and leaves exactly one usage record.
"""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest
from django.test import RequestFactory

from credentials import limits
from credentials.models import ClientKey
from gateway.api import openai_views, views
from gateway.fakekiro.script import Script
from tests.gateway.conftest import one_record, records

pytestmark = pytest.mark.django_db(transaction=True)

MODEL = "claude-sonnet-4-5"
PATHS = ["/v1/chat/completions", "/v1/responses"]
GOOD = {
    "/v1/chat/completions": {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}]},
    "/v1/responses": {"model": MODEL, "input": "Hi"},
}
BODIES = {
    "/v1/chat/completions": {"model": MODEL, "messages": "not a list"},
    "/v1/responses": {"model": MODEL, "input": 5},
}


def send(gateway, path, *, key=True, content=None, stream=True) -> httpx.Response:
    headers = {"content-type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {gateway.key}"
    if content is None:
        content = json.dumps(BODIES[path] | {"stream": stream})
    return httpx.post(gateway.base_url + path, content=content, headers=headers, timeout=30)


def assert_refused(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    record = one_record()
    assert (record.status, record.http_status) == ("rejected", status)
    return error


# --- the order of checks: key, size, body, limits --------------------------------------------


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("stream", [True, False])
def test_a_bad_body_without_a_key_is_a_401(gateway, path, stream):
    error = assert_refused(send(gateway, path, key=False, stream=stream), 401)

    assert error["code"] == "invalid_api_key"
    assert one_record().client_key is None


@pytest.mark.parametrize("path", PATHS)
def test_an_oversized_body_without_a_key_is_a_401(gateway, settings, path):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000

    assert_refused(send(gateway, path, key=False, content="{" + " " * 5000), 401)


@pytest.mark.parametrize("path", PATHS)
def test_an_oversized_bad_body_with_a_key_is_a_413(gateway, settings, path):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000

    assert_refused(send(gateway, path, content="{" + " " * 5000), 413)
    assert one_record().client_key is not None


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("stream", [True, False])
def test_a_bad_body_with_a_key_is_a_400_naming_the_field(gateway, path, stream):
    error = assert_refused(send(gateway, path, stream=stream), 400)

    assert error["param"] == ("messages" if path == "/v1/chat/completions" else "input")
    assert error["type"] == "invalid_request_error"


@pytest.mark.parametrize("path", PATHS)
def test_a_body_that_is_not_json_is_a_400(gateway, path):
    error = assert_refused(send(gateway, path, content="{nope"), 400)

    assert "not valid JSON" in error["message"]


def test_a_chat_body_declaring_a_hosted_web_search_tool_is_a_400(gateway):
    """Chat takes function tools only (§12.1): no chat request reaches the web-search loop."""
    body = GOOD["/v1/chat/completions"] | {"stream": True, "tools": [{"type": "web_search"}]}

    error = assert_refused(send(gateway, "/v1/chat/completions", content=json.dumps(body)), 400)

    assert error["param"] == "tools.0.type"


@pytest.mark.parametrize("path", PATHS)
def test_a_stream_over_the_keys_limit_is_a_429_json_error_with_retry_after(gateway, path):
    gateway.add_credential()
    ClientKey.objects.filter(name="test client").update(rpm_limit=1)
    body = json.dumps(GOOD[path] | {"stream": True})

    assert send(gateway, path, content=body).status_code == 200
    refused = send(gateway, path, content=body)

    assert refused.status_code == 429
    assert refused.headers["content-type"].startswith("application/json")
    assert int(refused.headers["Retry-After"]) >= 1
    error = refused.json()["error"]
    assert error["type"] == "rate_limit_error" and "requests per minute" in error["message"]
    assert [(r.status, r.http_status) for r in records(2)] == [
        ("success", 200),
        ("rejected", 429),
    ]


# --- exactly one record for every request ------------------------------------------------------


@pytest.mark.parametrize("path", PATHS)
def test_every_request_leaves_exactly_one_record(gateway, settings, path):
    _, account = gateway.add_credential()
    good = GOOD[path]

    sent = [
        send(gateway, path, content=json.dumps(good | {"stream": True})).status_code,
        send(gateway, path, content=json.dumps(good)).status_code,
        send(gateway, path, key=False).status_code,
        send(gateway, path).status_code,
        send(gateway, path, content="{nope").status_code,
    ]
    gateway.fake.script(Script.improperly_formed(), account=account.id)
    sent.append(send(gateway, path, content=json.dumps(good | {"stream": True})).status_code)
    gateway.fake.script(Script.reset_after(3), account=account.id)
    sent.append(send(gateway, path, content=json.dumps(good | {"stream": True})).status_code)
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    sent.append(send(gateway, path, content="{" + " " * 5000).status_code)

    assert sent == [200, 200, 401, 400, 400, 400, 200, 413]
    found = records(len(sent))
    assert [(r.endpoint, r.http_status) for r in found] == [(path, status) for status in sent]
    assert [r.status for r in found] == [
        "success",
        "success",
        "rejected",
        "rejected",
        "rejected",
        "rejected",  # the upstream refused it before the stream's head: as /v1/messages
        "error",
        "rejected",
    ]


@pytest.mark.parametrize("view", [openai_views.chat_completions, openai_views.responses])
def test_a_client_leaving_during_the_first_database_trip_leaves_one_record_and_no_hold(
    gateway, monkeypatch, view
):
    gateway.add_credential()
    ClientKey.objects.filter(name="test client").update(daily_token_budget=1_000_000)
    key = ClientKey.objects.get(name="test client")
    real_begin = views._begin

    def slow_begin(*args: object) -> object:
        begun = real_begin(*args)  # the body is converted and the reservation taken ...
        time.sleep(0.3)  # ... and the client leaves before the trip returns
        return begun

    monkeypatch.setattr(views, "_begin", slow_begin)
    path = "/v1/chat/completions" if view is openai_views.chat_completions else "/v1/responses"
    request = RequestFactory().post(
        path,
        data=GOOD[path] | {"stream": True},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {gateway.key}",
    )

    async def scenario() -> None:
        task = asyncio.ensure_future(view(request))
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())

    record = one_record()
    assert (record.endpoint, record.status, record.error_type) == (
        path,
        "interrupted",
        "client_disconnected",
    )
    assert record.client_key_id == key.pk
    assert limits.limit_in_flight(key_id=key.pk) == 0
