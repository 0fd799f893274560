"""The official anthropic SDK against a live gateway in front of the fake upstream."""

from __future__ import annotations

import anthropic
import pytest

from usage.models import UsageRecord

pytestmark = pytest.mark.django_db(transaction=True)


def client(gateway, prefix: str = "") -> anthropic.Anthropic:
    return anthropic.Anthropic(
        api_key=gateway.key, base_url=gateway.base_url + prefix, max_retries=0, timeout=30
    )


def test_it_creates_a_message(gateway):
    gateway.add_credential()

    message = client(gateway).messages.create(
        model="claude-sonnet-4-5-20250929",
        max_tokens=256,
        messages=[{"role": "user", "content": "Hello there"}],
    )

    assert message.role == "assistant"
    assert message.content[0].type == "text"
    assert "Hello there" in message.content[0].text
    assert message.stop_reason == "end_turn"
    record = UsageRecord.objects.get()
    assert (record.status, record.endpoint, record.stream) == ("success", "/v1/messages", False)


def test_it_streams_a_message(gateway):
    gateway.add_credential()

    with client(gateway).messages.stream(
        model="claude-sonnet-4-5-20250929",
        max_tokens=256,
        messages=[{"role": "user", "content": "Stream please"}],
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()

    assert "Stream please" in text
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens > 0
    record = UsageRecord.objects.get()
    assert (record.status, record.stream) == ("success", True)
    assert record.first_token_ms is not None


WEATHER = {
    "name": "get_weather",
    "description": "Get the weather for a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


def test_a_tool_round_trip(gateway):
    from gateway.fakekiro.script import Script

    _, account = gateway.add_credential()
    gateway.fake.script(
        Script.tool_call("get_weather", {"city": "Paris"}, fragments=4), account=account.id
    )
    gateway.fake.script(Script.text("It is sunny in Paris."), account=account.id)
    api = client(gateway)
    question = {"role": "user", "content": "Weather in Paris?"}

    first = api.messages.create(
        model="claude-sonnet-4-5", max_tokens=256, tools=[WEATHER], messages=[question]
    )
    call = next(block for block in first.content if block.type == "tool_use")
    second = api.messages.create(
        model="claude-sonnet-4-5",
        max_tokens=256,
        tools=[WEATHER],
        messages=[
            question,
            {"role": "assistant", "content": first.content},
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": call.id, "content": "sunny, 24 C"}
                ],
            },
        ],
    )

    assert first.stop_reason == "tool_use"
    assert (call.name, call.input) == ("get_weather", {"city": "Paris"})
    assert second.content[0].text == "It is sunny in Paris."
    sent = gateway.fake.requests_for("chat")[-1]
    assert sent.problems == []
    assert "sunny, 24 C" in sent.body.decode()


def test_thinking_comes_back_as_thinking_blocks(gateway):
    from gateway.fakekiro.script import Script

    _, account = gateway.add_credential()
    gateway.fake.script(Script.thinking("Let me think.", "The answer is 4."), account=account.id)

    with client(gateway).messages.stream(
        model="claude-sonnet-4-5",
        max_tokens=2048,
        thinking={"type": "enabled", "budget_tokens": 1024},
        messages=[{"role": "user", "content": "2+2?"}],
    ) as stream:
        final = stream.get_final_message()

    kinds = [block.type for block in final.content]
    assert kinds == ["thinking", "text"]
    assert final.content[0].thinking.strip() == "Let me think."
    assert final.content[1].text == "The answer is 4."


def test_the_cc_variant_through_the_sdk(gateway):
    gateway.add_credential()

    with client(gateway, "/cc").messages.stream(
        model="claude-sonnet-4-5",
        max_tokens=256,
        messages=[{"role": "user", "content": "via cc"}],
    ) as stream:
        final = stream.get_final_message()

    assert "via cc" in final.content[0].text
    assert final.usage.input_tokens > 0
    assert UsageRecord.objects.get().endpoint == "/cc/v1/messages"
