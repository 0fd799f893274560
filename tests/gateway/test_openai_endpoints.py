"""OpenAI-compatible endpoints with the official openai SDK and the captured clients (§12)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import openai
import pytest

from gateway.fakekiro.script import Script
from usage.models import UsageRecord

pytestmark = pytest.mark.django_db(transaction=True)

CLIENTS = Path(__file__).resolve().parents[3] / "shared" / "spec" / "clients"


def sdk(gateway) -> openai.OpenAI:
    return openai.OpenAI(
        api_key=gateway.key, base_url=gateway.base_url + "/v1", max_retries=0, timeout=30
    )


def test_chat_completions_through_the_sdk(gateway):
    gateway.add_credential()

    completion = sdk(gateway).chat.completions.create(
        model="claude-sonnet-4-5", messages=[{"role": "user", "content": "Hello chat"}]
    )

    assert "Hello chat" in completion.choices[0].message.content
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.total_tokens > 0
    record = UsageRecord.objects.get()
    assert (record.endpoint, record.status) == ("/v1/chat/completions", "success")


def test_streamed_chat_completions_through_the_sdk(gateway):
    gateway.add_credential()

    stream = sdk(gateway).chat.completions.create(
        model="claude-sonnet-4-5",
        stream=True,
        messages=[{"role": "user", "content": "Hello stream"}],
    )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)

    assert "Hello stream" in text


def test_chat_tool_calls_come_back_as_tool_calls(gateway):
    _, account = gateway.add_credential()
    gateway.fake.script(Script.tool_call("get_weather", {"city": "Oslo"}), account=account.id)

    completion = sdk(gateway).chat.completions.create(
        model="claude-sonnet-4-5",
        messages=[{"role": "user", "content": "Weather?"}],
        tools=[
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "description": "Weather",
                    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
                },
            }
        ],
    )

    call = completion.choices[0].message.tool_calls[0]
    assert completion.choices[0].finish_reason == "tool_calls"
    assert (call.function.name, json.loads(call.function.arguments)) == (
        "get_weather",
        {"city": "Oslo"},
    )


def test_responses_through_the_sdk(gateway):
    gateway.add_credential()

    response = sdk(gateway).responses.create(model="claude-sonnet-4-5", input="Hello codex")

    assert "Hello codex" in response.output_text
    assert UsageRecord.objects.get().endpoint == "/v1/responses"


def test_openai_errors_have_openai_shape(gateway):
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(
            api_key="wrong", base_url=gateway.base_url + "/v1", max_retries=0
        ).chat.completions.create(
            model="claude-sonnet-4-5", messages=[{"role": "user", "content": "x"}]
        )

    response = httpx.post(
        gateway.base_url + "/v1/chat/completions",
        json={"model": "m", "messages": "nope"},
        headers={"Authorization": f"Bearer {gateway.key}"},
    )

    assert response.status_code == 400
    assert set(response.json()["error"]) >= {"message", "type"}


@pytest.mark.parametrize(
    "name",
    [
        "openai-sdk-chat-stream.json",
        "openai-sdk-chat-tool-turn2.json",
        "codex-exec-turn1.json",
        "codex-exec-turn2-tool-output.json",
    ],
)
def test_the_captured_openai_request_passes_through(gateway, name):
    gateway.add_credential()
    capture = json.loads((CLIENTS / name).read_text())
    headers = {
        k: v
        for k, v in capture["headers"].items()
        if k.lower()
        not in {
            "content-length",
            "host",
            "connection",
            "accept-encoding",
            "authorization",
            "x-api-key",
        }
        and "…" not in v
    }
    headers["Authorization"] = f"Bearer {gateway.key}"

    response = httpx.request(
        capture["method"],
        gateway.base_url + capture["path"],
        json=capture["body"],
        headers=headers,
        timeout=60,
    )

    assert response.status_code == 200, response.text[:500]
    if capture["body"].get("stream") and capture["path"].startswith("/v1/responses"):
        assert "response.completed" in response.text and "response.failed" not in response.text
    elif capture["body"].get("stream"):
        assert response.text.rstrip().endswith("data: [DONE]")
    sent = gateway.fake.requests_for("chat")[-1]
    assert sent.problems == []
    assert UsageRecord.objects.get().status == "success"
