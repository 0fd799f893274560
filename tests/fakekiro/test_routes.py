"""Each upstream route answers like the real service (spec §1.3-§1.6, §9.3, §11.3)."""

from __future__ import annotations

import json

import httpx

from gateway.fakekiro import Script
from gateway.fakekiro.server import FakeKiroThread
from gateway.protocol.events import AssistantResponse
from tests.fakekiro.builders import TIMEOUT, auth_headers, events, simple_body


def test_it_serves_the_cli_endpoint_on_the_root_path(fake_kiro: FakeKiroThread) -> None:
    account = fake_kiro.add_account()
    fake_kiro.script(Script.text("from cli"))

    response = httpx.post(
        f"{fake_kiro.base_url}/",
        content=json.dumps(simple_body(endpoint="cli")),
        headers={
            **auth_headers(account.access_token or ""),
            "content-type": "application/x-amz-json-1.0",
            "x-amz-target": "AmazonCodeWhispererStreamingService.GenerateAssistantResponse",
        },
        timeout=TIMEOUT,
    )

    assert response.status_code == 200
    assert events(response.content) == [AssistantResponse("from cli")]
    assert fake_kiro.requests_for("chat")[0].endpoint == "cli"


def test_it_rejects_a_cli_call_with_the_ide_content_type(fake_kiro: FakeKiroThread) -> None:
    account = fake_kiro.add_account()

    response = httpx.post(
        f"{fake_kiro.base_url}/",
        json=simple_body(endpoint="cli"),
        headers={
            **auth_headers(account.access_token or ""),
            "x-amz-target": "AmazonCodeWhispererStreamingService.GenerateAssistantResponse",
        },
        timeout=TIMEOUT,
    )

    assert response.status_code == 400
    assert "content-type" in fake_kiro.requests_for("chat")[0].problems[0]


def test_it_answers_the_mcp_web_search(fake_kiro: FakeKiroThread) -> None:
    account = fake_kiro.add_account()
    request_id = "web_search_tooluse_abcdefghijklmnopqrstuv_1735689600000_abcd1234"

    response = httpx.post(
        f"{fake_kiro.base_url}/mcp",
        json={
            "id": request_id,
            "jsonrpc": "2.0",
            "method": "tools/call",
            "params": {"name": "web_search", "arguments": {"query": "rust async"}},
        },
        headers=auth_headers(account.access_token or ""),
        timeout=TIMEOUT,
    )

    assert response.status_code == 200
    answer = response.json()
    assert (answer["id"], answer["jsonrpc"], answer["result"]["isError"]) == (
        request_id,
        "2.0",
        False,
    )
    content = answer["result"]["content"][0]
    assert content["type"] == "text"
    inner = json.loads(content["text"])
    assert inner["query"] == "rust async"
    assert inner["totalResults"] == len(inner["results"]) == 5
    assert {"title", "url", "snippet", "publishedDate", "domain"} <= set(inner["results"][0])


def test_it_scripts_mcp_results_and_errors(fake_kiro: FakeKiroThread) -> None:
    account = fake_kiro.add_account()
    fake_kiro.script(
        Script.mcp_results([{"title": "Rust", "url": "https://www.rust-lang.org"}]),
        Script.mcp_error(),
        route="mcp",
    )
    call = {
        "id": "web_search_tooluse_x",
        "jsonrpc": "2.0",
        "method": "tools/call",
        "params": {"name": "web_search", "arguments": {"query": "rust"}},
    }

    def send() -> dict:
        return httpx.post(
            f"{fake_kiro.base_url}/mcp",
            json=call,
            headers=auth_headers(account.access_token or ""),
            timeout=TIMEOUT,
        ).json()

    results, error = send(), send()

    inner = json.loads(results["result"]["content"][0]["text"])
    assert inner == {
        "results": [{"title": "Rust", "url": "https://www.rust-lang.org"}],
        "totalResults": 1,
        "query": "rust",
    }
    assert error["error"] == {"code": -32602, "message": "Tool returned no results"}
    assert error["id"] == "web_search_tooluse_x"


def test_it_answers_get_usage_limits(fake_kiro: FakeKiroThread) -> None:
    account = fake_kiro.add_account(
        "alice",
        subscription_title="KIRO FREE",
        usage_limit=50,
        current_usage=12.5,
        free_trial={
            "freeTrialStatus": "ACTIVE",
            "freeTrialExpiry": 1767225600.0,
            "currentUsage": 3,
            "currentUsageWithPrecision": 3.0,
            "usageLimit": 500,
            "usageLimitWithPrecision": 500.0,
        },
        bonuses=[{"status": "ACTIVE", "currentUsage": 1.0, "usageLimit": 100.0}],
    )

    response = httpx.get(
        f"{fake_kiro.base_url}/getUsageLimits",
        params={
            "origin": "AI_EDITOR",
            "resourceType": "AGENTIC_REQUEST",
            "isEmailRequired": "true",
        },
        headers=auth_headers(account.access_token or ""),
        timeout=TIMEOUT,
    )

    assert response.status_code == 200
    body = response.json()
    assert body["subscriptionInfo"]["subscriptionTitle"] == "KIRO FREE"
    assert body["userInfo"]["email"] == "alice@example.com"
    usage = body["usageBreakdownList"][0]
    assert (usage["usageLimitWithPrecision"], usage["currentUsageWithPrecision"]) == (50.0, 12.5)
    assert usage["freeTrialInfo"]["freeTrialStatus"] == "ACTIVE"
    assert usage["bonuses"][0]["usageLimit"] == 100.0
    assert body["nextDateReset"] > 1_700_000_000


def test_it_adds_served_credits_to_the_usage(fake_kiro: FakeKiroThread) -> None:
    account = fake_kiro.add_account("alice", current_usage=1.0)
    fake_kiro.script(Script.text("x").with_usage(credits=0.25))

    httpx.post(
        f"{fake_kiro.base_url}/generateAssistantResponse",
        json=simple_body(),
        headers=auth_headers(account.access_token or ""),
        timeout=TIMEOUT,
    )

    assert fake_kiro.account("alice").current_usage == 1.25
    assert fake_kiro.counters["chat_by_account"] == {"alice": 1}


def test_it_lists_models_and_profiles(fake_kiro: FakeKiroThread) -> None:
    account = fake_kiro.add_account("alice", models=["claude-sonnet-4.5", "claude-opus-4.6"])
    headers = auth_headers(account.access_token or "")

    models = httpx.get(
        f"{fake_kiro.base_url}/ListAvailableModels",
        params={"origin": "AI_EDITOR"},
        headers=headers,
        timeout=TIMEOUT,
    )
    profiles = httpx.post(
        f"{fake_kiro.base_url}/",
        content=b'{"maxResults":10}',
        headers={
            **headers,
            "content-type": "application/x-amz-json-1.0",
            "x-amz-target": "AmazonCodeWhispererService.ListAvailableProfiles",
        },
        timeout=TIMEOUT,
    )

    listed = models.json()["models"]
    assert [m["modelId"] for m in listed] == ["claude-sonnet-4.5", "claude-opus-4.6"]
    assert listed[1]["tokenLimits"] == {"maxInputTokens": 1_000_000, "maxOutputTokens": 32_000}
    assert profiles.json()["profiles"][0]["arn"] == account.profile_arn


def test_it_sets_the_overage_preference(fake_kiro: FakeKiroThread) -> None:
    account = fake_kiro.add_account("alice")

    response = httpx.post(
        f"{fake_kiro.base_url}/setUserPreference",
        json={"overageConfiguration": {"overageStatus": "ENABLED"}},
        headers=auth_headers(account.access_token or ""),
        timeout=TIMEOUT,
    )

    assert response.status_code == 200
    assert fake_kiro.account("alice").overage_status == "ENABLED"


def test_it_answers_unknown_routes_with_404(fake_kiro: FakeKiroThread) -> None:
    response = httpx.get(f"{fake_kiro.base_url}/nope", timeout=TIMEOUT)

    assert response.status_code == 404
    assert fake_kiro.requests[0].route == "unknown"


def test_it_records_headers_and_bodies(fake_kiro: FakeKiroThread) -> None:
    account = fake_kiro.add_account("alice")

    httpx.post(
        f"{fake_kiro.base_url}/generateAssistantResponse",
        json=simple_body("recorded"),
        headers={**auth_headers(account.access_token or ""), "amz-sdk-request": "attempt=1; max=3"},
        timeout=TIMEOUT,
    )

    [recorded] = fake_kiro.requests_for("chat")
    assert recorded.header("amz-sdk-request") == "attempt=1; max=3"
    assert recorded.header("Authorization") == f"Bearer {account.access_token}"
    assert recorded.json["conversationState"]["currentMessage"]["userInputMessage"]["content"] == (
        "recorded"
    )
    assert (recorded.status, recorded.account_id, recorded.script) == (200, "alice", "default")


def test_it_enforces_opt_in_account_rules(fake_kiro: FakeKiroThread) -> None:
    account = fake_kiro.add_account(
        "free",
        subscription_title="KIRO FREE",
        enforce_models=True,
        enforce_quota=True,
        usage_limit=1,
        current_usage=1,
    )
    body = simple_body()
    body["conversationState"]["currentMessage"]["userInputMessage"]["modelId"] = "claude-opus-4.6"
    headers = auth_headers(account.access_token or "")
    url = f"{fake_kiro.base_url}/generateAssistantResponse"

    opus = httpx.post(url, json=body, headers=headers, timeout=TIMEOUT)
    quota = httpx.post(url, json=simple_body(), headers=headers, timeout=TIMEOUT)

    assert (opus.status_code, opus.json()["reason"]) == (400, "INVALID_MODEL_ID")
    assert (quota.status_code, quota.json()["reason"]) == (402, "MONTHLY_REQUEST_COUNT")
