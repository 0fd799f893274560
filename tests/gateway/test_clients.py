"""Requests captured from real clients pass through the gateway to the fake and back."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from usage.models import UsageRecord

pytestmark = pytest.mark.django_db(transaction=True)

CLIENTS = Path(__file__).resolve().parents[3] / "shared" / "spec" / "clients"
SKIPPED_HEADERS = {
    "content-length",
    "host",
    "connection",
    "accept-encoding",
    "x-api-key",
    "authorization",
}


def replay(gateway, name: str) -> httpx.Response:
    capture = json.loads((CLIENTS / name).read_text())
    headers = {
        k: v
        for k, v in capture["headers"].items()
        if k.lower() not in SKIPPED_HEADERS and "…" not in v
    }
    if "Authorization" in capture["headers"]:
        headers["Authorization"] = f"Bearer {gateway.key}"
    else:
        headers["x-api-key"] = gateway.key
    return httpx.request(
        capture["method"],
        gateway.base_url + capture["path"],
        json=capture["body"],
        headers=headers,
        timeout=60,
    )


@pytest.mark.parametrize(
    "name",
    [
        "claude-code-turn1.json",
        "claude-code-turn2-tool-result.json",
        "anthropic-sdk-stream.json",
    ],
)
def test_the_captured_request_streams_through(gateway, name):
    gateway.add_credential()

    response = replay(gateway, name)

    assert response.status_code == 200, response.text[:500]
    events = [line[7:] for line in response.text.splitlines() if line.startswith("event: ")]
    assert events[0] == "message_start"
    assert events[-1] == "message_stop"
    sent = gateway.fake.requests_for("chat")[-1]
    assert sent.problems == [] and sent.status == 200
    record = UsageRecord.objects.get()
    assert record.status == "success"
    if name.startswith("claude-code"):
        assert "fold_system_message" in record.normalizer_rules
