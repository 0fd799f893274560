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
