"""Fuzz every POST endpoint with bad input: never a 500, never HTML, one record per request.

Mutated valid bodies (any value replaced by one of another type, keys dropped or added, deep
nesting, NULs, lone surrogates, huge strings) and raw byte garbage, with and without a valid
key, against one live gateway per endpoint (real HTTP, the fake upstream behind it).
Bounded: a fixed number of examples, derandomized, so a run is the same every time (about
ten seconds per endpoint). To hunt for more: FUZZ_EXAMPLES=500 FUZZ_RANDOM=1.

The fake upstream answers normally, so no answer may be 5xx (a classified upstream failure
would be one; none is expected here).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as examples
from hypothesis import strategies as st

from tests.malformed import (
    CHAT_BODY,
    COUNT_BODIES,
    HUGE,
    MESSAGES_BODIES,
    MESSAGES_BODY,
    POST_PATHS,
    RESPONSES_BODY,
    RICH_MESSAGES_BODY,
    garbage,
    mutated,
)
from usage.models import UsageRecord

pytestmark = pytest.mark.django_db(transaction=True)

MAX_BODY = HUGE  # KIRO_MAX_BODY_BYTES for the run: the huge strings get their 413 quickly
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "50"))


@dataclass(frozen=True)
class Endpoint:
    path: str
    shape: str  # "anthropic" or "openai"
    bodies: tuple[dict[str, Any], ...]
    streams: bool


ENDPOINTS = {
    e.path: e
    for e in (
        Endpoint("/v1/messages", "anthropic", MESSAGES_BODIES, True),
        Endpoint("/cc/v1/messages", "anthropic", (MESSAGES_BODY, RICH_MESSAGES_BODY), True),
        Endpoint("/v1/messages/count_tokens", "anthropic", tuple(COUNT_BODIES), False),
        Endpoint("/cc/v1/messages/count_tokens", "anthropic", tuple(COUNT_BODIES), False),
        Endpoint("/v1/chat/completions", "openai", (CHAT_BODY,), True),
        Endpoint("/v1/responses", "openai", (RESPONSES_BODY,), True),
    )
}


# --- checks ----------------------------------------------------------------------------------


@dataclass
class Run:
    gateway: Any
    endpoint: Endpoint
    sent: int = 0

    def expect(self, condition: bool, what: str) -> None:
        if not condition:
            raise AssertionError(what)


def _records_after(expected: int, *, wait: bool) -> int:
    deadline = time.monotonic() + (5 if wait else 0)
    while True:
        count = UsageRecord.objects.count()
        if count >= expected or time.monotonic() >= deadline:
            return count
        time.sleep(0.02)


def check_error_shape(run: Run, body: Any, where: str) -> None:
    if run.endpoint.shape == "anthropic":
        assert isinstance(body, dict) and body.get("type") == "error", where
        error = body["error"]
        assert set(error) == {"type", "message"}, where
    else:
        assert isinstance(body, dict) and set(body) == {"error"}, where
        error = body["error"]
        assert set(error) == {"message", "type", "param", "code"}, where
    assert isinstance(error["type"], str) and error["type"], where
    assert isinstance(error["message"], str) and error["message"], where


def check_success_shape(run: Run, body: Any, where: str) -> None:
    path = run.endpoint.path
    if path.endswith("count_tokens"):
        assert isinstance(body.get("input_tokens"), int), where
    elif run.endpoint.shape == "anthropic":
        assert body.get("type") == "message", where
    elif path == "/v1/chat/completions":
        assert body.get("object") == "chat.completion", where
    else:
        assert body.get("object") == "response", where


def check_stream(run: Run, text: str, where: str) -> None:
    """A well-formed SSE stream: JSON data in every event, and a proper last event."""
    events = [block for block in text.split("\n\n") if block.strip()]
    assert events, where
    last = None
    for block in events:
        data = [line[6:] for line in block.split("\n") if line.startswith("data: ")]
        assert len(data) == 1, where
        last = data[0] if data[0] == "[DONE]" else json.loads(data[0])
    path = run.endpoint.path
    if run.endpoint.shape == "anthropic":
        assert last.get("type") in ("message_stop", "error"), where
    elif path == "/v1/chat/completions":
        assert last == "[DONE]" or "error" in last, where
    else:
        assert last.get("type") in ("response.completed", "response.failed", "error"), where


def send(run: Run, content: bytes, key: str | None) -> None:
    headers = {"content-type": "application/json"}
    if key is not None:
        headers["x-api-key"] = key
    before = UsageRecord.objects.count()
    response = httpx.post(
        run.gateway.base_url + run.endpoint.path, content=content, headers=headers, timeout=60
    )
    run.sent += 1
    where = f"{response.status_code} {response.text[:300]!r} for {content[:300]!r}"
    assert response.status_code < 500, where
    streamed = response.headers.get("content-type", "").startswith("text/event-stream")
    if key != run.gateway.key:
        run.expect(response.status_code == 401, f"no 401 first: {where}")
    else:
        assert response.status_code != 401, where
    if streamed:
        assert response.status_code == 200, where
        check_stream(run, response.text, where)
    else:
        assert response.headers["content-type"].startswith("application/json"), where
        body = response.json()
        if response.status_code >= 400:
            check_error_shape(run, body, where)
        else:
            check_success_shape(run, body, where)
    after = _records_after(before + 1, wait=streamed)
    run.expect(after == before + 1, f"{after - before} records: {where}")


KEYS = st.sampled_from(["valid"] * 6 + [None, "sk-wrong"])  # a quarter without a valid key


@pytest.mark.timeout(300)
@pytest.mark.parametrize("path", POST_PATHS)
def test_bad_input_never_gets_a_500_or_html_and_every_request_leaves_a_record(
    gateway, settings_override, path
):
    gateway.add_credential()
    endpoint = ENDPOINTS[path]
    run = Run(gateway, endpoint)

    @examples(
        max_examples=EXAMPLES,
        derandomize=not os.environ.get("FUZZ_RANDOM"),
        database=None,
        deadline=timedelta(seconds=20),
        suppress_health_check=list(HealthCheck),
    )
    @given(
        content=mutated(endpoint.bodies, streams=endpoint.streams) | garbage(endpoint.bodies),
        key=KEYS,
    )
    def one(content: bytes, key: str | None) -> None:
        send(run, content, gateway.key if key == "valid" else key)

    one()

    total = _records_after(run.sent, wait=True)
    run.expect(total == run.sent, f"{total} records for {run.sent} requests")


@pytest.fixture
def settings_override(settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_BODY
    return settings
