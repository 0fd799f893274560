"""Web search through the gateway: the MCP path and the mixed-tools loop (spec §11)."""

from __future__ import annotations

import json

import httpx
import pytest

from gateway.fakekiro.script import Script
from usage.models import UsageRecord

pytestmark = pytest.mark.django_db(transaction=True)

WEB_SEARCH = {"type": "web_search_20250305", "name": "web_search", "max_uses": 5}
RESULTS = [
    {
        "title": "Rust",
        "url": "https://www.rust-lang.org",
        "snippet": "A language",
        "publishedDate": 1735689600000,
    }
]


def post(gateway, body):
    return httpx.post(
        gateway.base_url + "/v1/messages", json=body, timeout=30, headers={"x-api-key": gateway.key}
    )


def search_body(**extra):
    return {
        "model": "claude-sonnet-4-5",
        "max_tokens": 256,
        "tools": [WEB_SEARCH],
        "messages": [
            {"role": "user", "content": "Perform a web search for the query: rust language"}
        ],
    } | extra


def test_a_web_search_only_request_goes_to_mcp_and_renders_results(gateway):
    _, account = gateway.add_credential()
    gateway.fake.script(
        Script.mcp_results(RESULTS, query="rust language"), route="mcp", account=account.id
    )

    response = post(gateway, search_body())

    message = response.json()
    assert response.status_code == 200
    kinds = [block["type"] for block in message["content"]]
    assert kinds == ["text", "server_tool_use", "web_search_tool_result", "text"]
    assert message["content"][1]["input"] == {"query": "rust language"}
    assert message["content"][2]["content"][0]["page_age"] == "January 1, 2025"
    sent = gateway.fake.requests_for("mcp")[-1]
    assert json.loads(sent.body)["params"]["arguments"] == {"query": "rust language"}
    assert UsageRecord.objects.get().status == "success"


def test_a_streamed_web_search_renders_the_event_list(gateway):
    _, account = gateway.add_credential()
    gateway.fake.script(Script.mcp_results(RESULTS), route="mcp", account=account.id)

    response = post(gateway, search_body(stream=True))

    names = [line[7:] for line in response.text.splitlines() if line.startswith("event: ")]
    assert names[0] == "message_start" and names[-1] == "message_stop"
    assert "content_block_start" in names


def test_a_failed_search_is_an_error_not_a_fake_success(gateway):
    _, account = gateway.add_credential()
    gateway.fake.script(
        Script.json({"id": "x", "jsonrpc": "2.0", "error": {"code": -32000, "message": "boom"}}),
        route="mcp",
        account=account.id,
    )

    response = post(gateway, search_body())

    assert response.status_code == 502
    assert response.json()["type"] == "error"
    assert UsageRecord.objects.get().status == "error"


def test_mixed_tools_run_the_search_loop(gateway):
    _, account = gateway.add_credential()
    gateway.fake.script(Script.tool_call("web_search", {"query": "rust"}), account=account.id)
    gateway.fake.script(Script.mcp_results(RESULTS), route="mcp", account=account.id)
    gateway.fake.script(Script.text("Rust is a language."), account=account.id)
    weather = {
        "name": "get_weather",
        "description": "Weather for a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
    }

    response = post(gateway, search_body(tools=[WEB_SEARCH, weather]))

    message = response.json()
    assert response.status_code == 200, message
    kinds = [block["type"] for block in message["content"]]
    assert kinds[:2] == ["server_tool_use", "web_search_tool_result"]
    assert kinds[-1] == "text"
    assert len(gateway.fake.requests_for("chat")) == 2
    record = UsageRecord.objects.get()
    assert record.status == "success"
    assert [a.outcome for a in record.attempts.all()] == ["success"] * 3


def test_a_client_leaving_during_the_search_leaves_one_record(gateway):
    import time

    _, account = gateway.add_credential()
    gateway.fake.script(Script.mcp_results(RESULTS).delayed(3), route="mcp", account=account.id)

    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            gateway.base_url + "/v1/messages",
            json=search_body(),
            timeout=1,
            headers={"x-api-key": gateway.key},
        )

    deadline = time.monotonic() + 10
    while not UsageRecord.objects.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert UsageRecord.objects.get().status == "interrupted"
