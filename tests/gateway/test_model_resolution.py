"""Model resolution over the live catalogue (issue 9): ids no credential lists still work.

The fake's accounts list only older models and refuse any other id (`enforce_models`), so a
wrong id sent upstream fails the request. Claude Code's default (`claude-opus-5-5`) and newer
ids must work on a cold cache and on a warm one alike.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import anthropic
import httpx
import openai
import pytest

from credentials.models import Credential, GatewaySettings
from gateway.fakekiro.script import Script
from usage.models import UsageRecord

pytestmark = pytest.mark.django_db(transaction=True)

CLIENTS = Path(__file__).resolve().parents[3] / "shared" / "spec" / "clients"
OLDER = ["claude-sonnet-4.5", "claude-opus-4.6", "claude-haiku-4.5"]


def older_pool(gateway, count: int = 2, models: list[str] = OLDER) -> list:
    """Add `count` credentials whose accounts list and accept only `models`."""
    return [
        gateway.add_credential(priority=n, models=list(models), enforce_models=True)
        for n in range(count)
    ]


def post(gateway, body: dict, path: str = "/v1/messages") -> httpx.Response:
    return httpx.post(
        gateway.base_url + path, json=body, timeout=30, headers={"x-api-key": gateway.key}
    )


def body(model: str, **extra: object) -> dict:
    return {
        "model": model,
        "max_tokens": 64,
        "messages": [{"role": "user", "content": "Say hi"}],
    } | extra


def sent_models(gateway) -> list[str]:
    """Return the model id of every chat request the fake received, in order."""
    return [
        json.loads(r.body)["conversationState"]["currentMessage"]["userInputMessage"]["modelId"]
        for r in gateway.fake.requests_for("chat")
    ]


def echoed_model(response: httpx.Response) -> str:
    """Return the model id the answer names (message_start of a stream, or the JSON)."""
    if response.headers["content-type"].startswith("text/event-stream"):
        for line in response.text.splitlines():
            if line.startswith("data: ") and '"message_start"' in line:
                return json.loads(line[6:])["message"]["model"]
        raise AssertionError("no message_start")
    return response.json()["model"]


def records() -> list[tuple[str, str, list[str], int]]:
    return [
        (r.model_requested, r.model_sent, r.normalizer_rules, r.http_status)
        for r in UsageRecord.objects.order_by("id")
    ]


@pytest.mark.parametrize("path", ["/v1/messages", "/cc/v1/messages"])
@pytest.mark.parametrize("stream", [False, True])
def test_claude_codes_default_is_served_cold_then_warm(gateway, path, stream):
    older_pool(gateway)

    for _ in range(4):
        response = post(gateway, body("claude-opus-5-5", stream=stream), path)
        assert response.status_code == 200, response.text[:300]
        assert echoed_model(response) == "claude-opus-5-5"

    assert sent_models(gateway) == ["claude-opus-4.6"] * 4
    assert all(
        (requested, sent, status) == ("claude-opus-5-5", "claude-opus-4.6", 200)
        and "model_fallback" in rules
        for requested, sent, rules, status in records()
    )
    # Cold: each list fetched once, before the first request was resolved; warm afterwards.
    assert len(gateway.fake.requests_for("models")) == 2
    assert all(c.available_models == sorted(OLDER) for c in Credential.objects.all())


def test_a_listed_model_is_sent_without_a_rule(gateway):
    older_pool(gateway)

    response = post(gateway, body("claude-sonnet-4-5-20250929"))

    assert response.status_code == 200
    assert records() == [("claude-sonnet-4-5-20250929", "claude-sonnet-4.5", [], 200)]


@pytest.mark.parametrize("prefix", ["", "/cc"])
def test_the_anthropic_sdk_with_a_newer_sonnet_works(gateway, prefix):
    older_pool(gateway)
    client = anthropic.Anthropic(
        api_key=gateway.key, base_url=gateway.base_url + prefix, max_retries=0, timeout=30
    )

    for _ in range(3):
        message = client.messages.create(
            model="claude-sonnet-4-7",
            max_tokens=64,
            messages=[{"role": "user", "content": "Hello there"}],
        )
        assert message.model == "claude-sonnet-4-7"
        assert "Hello there" in message.content[0].text
        with client.messages.stream(
            model="claude-sonnet-4-7",
            max_tokens=64,
            messages=[{"role": "user", "content": "Stream please"}],
        ) as stream:
            assert "Stream please" in "".join(stream.text_stream)
            assert stream.get_final_message().model == "claude-sonnet-4-7"

    assert sent_models(gateway) == ["claude-sonnet-4.5"] * 6
    assert {(r[0], r[1]) for r in records()} == {("claude-sonnet-4-7", "claude-sonnet-4.5")}
    assert all("model_fallback" in r[2] for r in records())


def replay(gateway, name: str) -> httpx.Response:
    """Send a captured Claude Code request as it came (cut header values left out)."""
    capture = json.loads((CLIENTS / name).read_text())
    headers = {
        k: v
        for k, v in capture["headers"].items()
        if k.lower() not in ("content-length", "host", "connection", "x-api-key") and "…" not in v
    }
    return httpx.post(
        gateway.base_url + capture["path"],
        json=capture["body"],
        headers=headers | {"x-api-key": gateway.key},
        timeout=60,
    )


def test_claude_codes_captured_bash_round_trip_works_over_many_turns(gateway):
    older_pool(gateway)

    for _ in range(3):
        gateway.fake.script(Script.tool_call("execute_bash", {"command": "ls"}))
        first = replay(gateway, "claude-code-turn1.json")
        assert first.status_code == 200, first.text[:300]
        assert echoed_model(first) == "claude-opus-5-5"
        starts = [
            json.loads(line[6:])
            for line in first.text.splitlines()
            if line.startswith("data: ") and '"content_block_start"' in line
        ]
        assert [s["content_block"]["name"] for s in starts if "name" in s["content_block"]] == [
            "Bash"
        ]
        second = replay(gateway, "claude-code-turn2-tool-result.json")
        assert second.status_code == 200, second.text[:300]
        assert '"text_delta"' in second.text

    assert sent_models(gateway) == ["claude-opus-4.6"] * 6
    for requested, sent, rules, status in records():
        assert (requested, sent, status) == ("claude-opus-5-5", "claude-opus-4.6", 200)
        assert "model_fallback" in rules and "fold_system_message" in rules


def test_concurrent_cold_requests_fetch_each_list_once(gateway):
    accounts = [account.id for _, account in older_pool(gateway, count=3)]

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=60, headers={"x-api-key": gateway.key}) as client:
            return await asyncio.gather(
                *(
                    client.post(gateway.base_url + "/v1/messages", json=body("claude-opus-5-5"))
                    for _ in range(12)
                )
            )

    responses = asyncio.run(burst())

    assert [r.status_code for r in responses] == [200] * 12
    fetched = [r.account_id for r in gateway.fake.requests_for("models")]
    assert sorted(fetched) == sorted(accounts)
    assert set(sent_models(gateway)) == {"claude-opus-4.6"}


def test_a_failing_model_list_on_a_cold_cache_still_serves_from_hs_table(gateway):
    older_pool(gateway, count=1)
    gateway.fake.script(Script.fault(500, "boom"), route="models", times=None)

    for _ in range(3):
        assert post(gateway, body("claude-opus-5-5")).status_code == 200

    # H's table: claude-opus-4.6 is its newest opus; the failed list is not asked again.
    assert sent_models(gateway) == ["claude-opus-4.6"] * 3
    assert len(gateway.fake.requests_for("models")) == 1
    assert Credential.objects.get().available_models is None
    assert all("model_fallback" in rules for _, _, rules, _ in records())


def test_a_token_that_cannot_be_refreshed_for_the_cold_fetch_does_not_fail_the_request(gateway):
    [(broken, _), (healthy, _)] = older_pool(gateway)
    broken.set_refresh_token("aor" + "Z" * 150)  # unknown to the fake: invalid_grant
    broken.save()

    response = post(gateway, body("claude-opus-5-5"))

    # The list fetch refreshes the token first; invalid_grant disables the credential then,
    # and the request goes to the one whose list is confirmed.
    assert response.status_code == 200
    stored = Credential.objects.get(pk=broken.pk)
    assert (stored.enabled, stored.disabled_reason) == (False, "InvalidRefreshToken")
    assert stored.available_models is None
    assert Credential.objects.get(pk=healthy.pk).available_models == sorted(OLDER)
    [record] = UsageRecord.objects.all()
    assert [(a.credential_id, a.outcome) for a in record.attempts.all()] == [
        (healthy.pk, "success")
    ]
    assert sent_models(gateway) == ["claude-opus-4.6"]


def test_a_family_with_nothing_listed_gets_the_operator_default(gateway):
    older_pool(gateway, count=1)
    GatewaySettings.objects.update_or_create(
        pk=GatewaySettings.singleton_id, defaults={"fallback_model": "claude-haiku-4-5"}
    )

    response = post(gateway, body("gpt-5-codex"))

    assert response.status_code == 200
    assert records() == [("gpt-5-codex", "claude-haiku-4.5", ["model_default"], 200)]


def test_codex_default_on_responses_gets_the_newest_listed_gpt(gateway):
    older_pool(gateway, count=1, models=[*OLDER, "gpt-5.1", "gpt-5.6-sol"])
    client = openai.OpenAI(
        api_key=gateway.key, base_url=gateway.base_url + "/v1", max_retries=0, timeout=30
    )

    for _ in range(2):
        response = client.responses.create(model="gpt-5-codex", input="Hello codex")
        assert "Hello codex" in response.output_text
        assert response.model == "gpt-5-codex"

    assert sent_models(gateway) == ["gpt-5.6-sol"] * 2
    assert {(r[0], r[1]) for r in records()} == {("gpt-5-codex", "gpt-5.6-sol")}


def test_the_mixed_web_search_loop_sends_the_resolved_id(gateway):
    older_pool(gateway, count=1)
    gateway.fake.script(Script.tool_call("web_search", {"query": "rust"}))
    gateway.fake.script(Script.mcp_results([]), route="mcp")
    gateway.fake.script(Script.text("Rust is a language."))
    weather = {
        "name": "get_weather",
        "description": "Weather for a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
    }
    web_search = {"type": "web_search_20250305", "name": "web_search", "max_uses": 5}

    response = post(gateway, body("claude-opus-5-5", tools=[web_search, weather]))

    assert response.status_code == 200, response.text[:300]
    assert sent_models(gateway) == ["claude-opus-4.6"] * 2
    assert records() == [("claude-opus-5-5", "claude-opus-4.6", ["model_fallback"], 200)]


def strict(gateway) -> None:
    GatewaySettings.objects.update_or_create(
        pk=GatewaySettings.singleton_id, defaults={"model_resolution": "strict"}
    )


def test_strict_mode_answers_404_naming_the_model_and_the_listed_ids(gateway):
    older_pool(gateway)
    strict(gateway)

    response = post(gateway, body("claude-opus-5-5"))

    assert response.status_code == 404
    error = response.json()["error"]
    assert error["type"] == "not_found_error"
    assert "'claude-opus-5-5'" in error["message"]
    assert "claude-haiku-4.5, claude-opus-4.6, claude-sonnet-4.5" in error["message"]
    assert gateway.fake.requests_for("chat") == []
    record = UsageRecord.objects.get()
    assert (record.http_status, record.error_type, record.model_requested) == (
        404,
        "model_not_found",
        "claude-opus-5-5",
    )
    # A listed model is still served.
    assert post(gateway, body("claude-sonnet-4-5")).status_code == 200


def test_strict_mode_on_chat_completions_answers_openais_model_not_found(gateway):
    older_pool(gateway, count=1)
    strict(gateway)

    response = httpx.post(
        gateway.base_url + "/v1/chat/completions",
        json={"model": "gpt-5-codex", "messages": [{"role": "user", "content": "hi"}]},
        headers={"Authorization": f"Bearer {gateway.key}"},
        timeout=30,
    )

    assert response.status_code == 404
    error = response.json()["error"]
    assert (error["type"], error["param"], error["code"]) == (
        "invalid_request_error",
        "model",
        "model_not_found",
    )
    assert "'gpt-5-codex'" in error["message"] and "claude-sonnet-4.5" in error["message"]
    assert UsageRecord.objects.get().http_status == 404


def test_503_only_when_no_credential_is_usable(gateway):
    assert post(gateway, body("claude-opus-5-5")).status_code == 503  # no credential at all

    [(credential, _)] = older_pool(gateway, count=1, models=["claude-haiku-4.5"])
    # Nothing of the opus family, no sonnet: the newest listed model of any family.
    assert post(gateway, body("claude-opus-5-5")).status_code == 200
    assert sent_models(gateway) == ["claude-haiku-4.5"]

    Credential.objects.filter(pk=credential.pk).update(enabled=False)
    response = post(gateway, body("claude-opus-5-5"))
    assert response.status_code == 503
    assert "No upstream credential" in response.json()["error"]["message"]
    assert [r[3] for r in records()] == [503, 200, 503]


def test_models_lists_the_true_union_fetched_on_a_cold_cache(gateway):
    older_pool(gateway, count=1, models=[*OLDER, "gpt-5.1", "auto"])

    response = httpx.get(
        gateway.base_url + "/v1/models", headers={"x-api-key": gateway.key}, timeout=10
    )

    assert response.status_code == 200
    ids = [m["id"] for m in response.json()["data"]]
    assert len(ids) == len(set(ids))
    assert {
        "claude-opus-4-6",
        "claude-opus-4-6-thinking",
        "claude-sonnet-4-5-20250929",
        "claude-sonnet-4-5-20250929-thinking",
        "claude-haiku-4-5-20251001",
        "claude-haiku-4-5-20251001-thinking",
        "claude-opus-4.6",
        "claude-sonnet-4.5",
        "claude-haiku-4.5",
        "gpt-5.1",
        "auto",
    } == set(ids)
    assert Credential.objects.get().available_models is not None  # stored: warm now
