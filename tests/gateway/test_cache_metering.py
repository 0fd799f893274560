"""Prompt-cache metering through the gateway: the client's cache_control breakpoints give
cache_creation / cache_read figures everywhere usage appears, and a setting turns it off."""

from __future__ import annotations

import json

import httpx
import openai
import pytest
from django.core.cache import caches
from django.test import override_settings

from credentials.models import GatewaySettings
from tests.gateway.conftest import gateway_process
from usage import prompt_cache
from usage.models import UsageRecord

LONG = "House rules for this repository. " * 400
SYSTEM = [{"type": "text", "text": LONG, "cache_control": {"type": "ephemeral"}}]


@pytest.fixture(autouse=True)
def empty_store():
    caches[prompt_cache.ALIAS].clear()
    yield
    caches[prompt_cache.ALIAS].clear()


def ask(gateway, question: str, *, stream: bool = False) -> dict:
    return ask_at(gateway.base_url, gateway.key, question, stream=stream)


def ask_at(base_url: str, key: str, question: str, *, stream: bool = False) -> dict:
    body = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 64,
        "system": SYSTEM,
        "messages": [{"role": "user", "content": question}],
        "stream": stream,
    }
    response = httpx.post(
        base_url + "/v1/messages", json=body, headers={"x-api-key": key}, timeout=30
    )
    assert response.status_code == 200, response.text[:300]
    if not stream:
        return response.json()["usage"]
    usage: dict = {}
    for line in response.text.splitlines():
        if line.startswith("data: "):
            event = json.loads(line[6:])
            if event["type"] == "message_start":
                usage |= event["message"]["usage"]
            elif event["type"] == "message_delta":
                usage |= event["usage"]
    return usage


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_the_same_long_system_prompt_is_written_once_then_read(gateway, stream):
    gateway.add_credential()

    first = ask(gateway, "first question", stream=stream)
    second = ask(gateway, "second question", stream=stream)

    assert first["cache_creation_input_tokens"] > 1000
    assert first["cache_read_input_tokens"] == 0
    assert second["cache_read_input_tokens"] > 1000
    assert second["cache_creation_input_tokens"] == 0
    assert second["input_tokens"] < 100
    records = list(UsageRecord.objects.order_by("id"))
    assert [r.cache_read_tokens > 1000 for r in records] == [False, True]
    assert records[0].cache_creation_tokens == first["cache_creation_input_tokens"]


def test_metering_off_leaves_the_upstreams_figures(gateway):
    gateway.add_credential()
    GatewaySettings.objects.update_or_create(
        pk=GatewaySettings.singleton_id, defaults={"prompt_cache_metering": False}
    )

    ask(gateway, "first question")
    second = ask(gateway, "second question")

    assert second["cache_read_input_tokens"] == 0
    assert second["cache_creation_input_tokens"] == 0
    assert second["input_tokens"] > 1000
    assert {(r.cache_creation_tokens, r.cache_read_tokens) for r in UsageRecord.objects.all()} == {
        (0, 0)
    }


def test_openai_clients_see_the_read_as_cached_tokens(gateway):
    gateway.add_credential()
    client = openai.OpenAI(
        api_key=gateway.key, base_url=gateway.base_url + "/v1", max_retries=0, timeout=30
    )

    def chat(question: str):
        return client.chat.completions.create(
            model="claude-sonnet-4-5",
            messages=[
                {"role": "system", "content": [{"type": "text", "text": LONG}]},
                {"role": "user", "content": question},
            ],
        ).usage

    # OpenAI requests carry no cache_control: nothing is metered as cached, as with OpenAI's
    # own automatic cache the figure is what the upstream reports.
    assert chat("one").prompt_tokens_details.cached_tokens == 0
    assert chat("two").prompt_tokens_details.cached_tokens == 0


@pytest.fixture
def shared_store(redis_url):
    """This process's prompt-cache store on the tests' Redis database, as REDIS_URL sets it."""
    caches_setting = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
        prompt_cache.ALIAS: {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": redis_url,
            "KEY_PREFIX": "kiro",
        },
    }
    with override_settings(CACHES=caches_setting):
        yield redis_url


def test_two_processes_sharing_redis_share_the_prompt_cache(gateway, shared_store):
    gateway.add_credential()
    other = gateway_process(gateway, REDIS_URL=shared_store)
    base_url = next(other)
    try:
        first = ask(gateway, "asked here")
        there = ask_at(base_url, gateway.key, "asked in the other process")
    finally:
        next(other, None)

    assert first["cache_creation_input_tokens"] > 1000
    assert there["cache_read_input_tokens"] > 1000
    assert there["cache_creation_input_tokens"] == 0
