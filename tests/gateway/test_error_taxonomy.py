"""Every error a client can get from the Anthropic endpoints uses one of Anthropic's documented
types, and every usage record's error_type is one value of our documented enum.

Each case walks one path that builds a client error, through the live gateway in front of the
fake upstream, streamed where the path is reached only by a stream."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest

from credentials.models import ClientKey, GatewaySettings
from gateway.fakekiro.script import Script
from gateway.protocol.errors import AnthropicType, ErrorType
from usage.models import UsageRecord

DOCUMENTED = {kind.value for kind in AnthropicType}
RECORDED = {kind.value for kind in ErrorType}
MODEL = "claude-sonnet-4-5"
BODY = {"model": MODEL, "max_tokens": 64, "messages": [{"role": "user", "content": "Hi"}]}
CUT_TOOL = Script.text("Let me run it.") + Script.event(
    "toolUseEvent",
    {"name": "exec_command", "toolUseId": "call_9", "input": '{"cmd":', "stop": False},
)
EXEC = {"name": "exec_command", "input_schema": {"type": "object", "properties": {}}}


def send(gateway, *, body=None, path="/v1/messages", method="POST", key=True, content=None):
    headers = {"x-api-key": gateway.key} if key else {}
    if content is None:
        content = json.dumps(BODY if body is None else body).encode()
    headers["content-type"] = "application/json"
    return httpx.request(
        method, gateway.base_url + path, content=content, headers=headers, timeout=30
    )


def client_types(response: httpx.Response) -> list[str]:
    """Return the error types the client saw: the JSON body's, or the SSE error events'."""
    if response.headers["content-type"].startswith("text/event-stream"):
        return [
            json.loads(line[6:])["error"]["type"]
            for line in response.text.splitlines()
            if line.startswith("data: ") and '"type":"error"' in line.replace(" ", "")
        ]
    payload = response.json()
    assert payload["type"] == "error"
    return [payload["error"]["type"]]


def with_account(gateway, script: Script | None = None, **values):
    _, account = gateway.add_credential(**values)
    if script is not None:
        gateway.fake.script(script, account=account.id)
    return account


def strict_pool(gateway):
    with_account(gateway, models=["claude-sonnet-4.5"], enforce_models=True)
    GatewaySettings.objects.update_or_create(
        pk=GatewaySettings.singleton_id, defaults={"model_resolution": "strict"}
    )


def rpm_limited(gateway):
    with_account(gateway)
    ClientKey.objects.filter(name="test client").update(rpm_limit=1)
    assert send(gateway).status_code == 200


Case = tuple[str, Callable, dict, int, str, str]
CASES: list[Case] = [
    # name, setup, request, status, client type, record type
    ("no key", lambda g: None, {"key": False}, 401, "authentication_error", "authentication"),
    (
        "bad json",
        lambda g: None,
        {"content": b"{"},
        400,
        "invalid_request_error",
        "invalid_request",
    ),
    ("404", lambda g: None, {"path": "/v1/nothing"}, 404, "not_found_error", "not_found"),
    ("405", lambda g: None, {"method": "GET"}, 405, "invalid_request_error", "method_not_allowed"),
    (
        "strict",
        strict_pool,
        {"body": BODY | {"model": "claude-opus-9"}},
        404,
        "not_found_error",
        "model_not_found",
    ),
    ("key rpm", rpm_limited, {}, 429, "rate_limit_error", "key_rpm_limit"),
    ("no credential", lambda g: None, {}, 503, "api_error", "no_credentials"),
    (
        "upstream 400",
        lambda g: with_account(g, Script.improperly_formed()),
        {},
        400,
        "invalid_request_error",
        "bad_request",
    ),
    (
        "upstream 504",
        lambda g: with_account(g, Script.gateway_timeout()),
        {},
        504,
        "timeout_error",
        "transient",
    ),
    (
        "quota",
        lambda g: with_account(g, Script.quota_exhausted()),
        {},
        502,
        "api_error",
        "upstream_exhausted",
    ),
    (
        "exception frame",
        lambda g: with_account(g, Script.text("Hi") + Script.error_frame()),
        {},
        502,
        "api_error",
        "upstream_exception",
    ),
    (
        "exception frame, stream",
        lambda g: with_account(g, Script.text("Hi") + Script.error_frame()),
        {"body": BODY | {"stream": True}},
        200,
        "api_error",
        "upstream_exception",
    ),
    (
        "cut tool",
        lambda g: with_account(g, CUT_TOOL),
        {"body": BODY | {"tools": [EXEC]}},
        502,
        "api_error",
        "tool_json_cut",
    ),
    (
        "cut tool, stream",
        lambda g: with_account(g, CUT_TOOL),
        {"body": BODY | {"tools": [EXEC], "stream": True}},
        200,
        "api_error",
        "tool_json_cut",
    ),
    (
        "broken stream",
        lambda g: with_account(g, Script.text("Hi").reset_after(1)),
        {"body": BODY | {"stream": True}},
        200,
        "api_error",
        "stream_interrupted",
    ),
    (
        "broken body",
        lambda g: with_account(g, Script.text("Hi").reset_after(1)),
        {},
        502,
        "api_error",
        "stream_interrupted",
    ),
]


@pytest.mark.parametrize(
    ("setup", "request_", "status", "client_type", "record_type"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_every_error_path_answers_a_documented_type_and_records_one_of_the_enum(
    gateway, setup, request_, status, client_type, record_type
):
    setup(gateway)
    before = set(UsageRecord.objects.values_list("pk", flat=True))

    response = send(gateway, **request_)

    assert response.status_code == status, response.text[:300]
    types = client_types(response)
    assert types == [client_type]
    assert set(types) <= DOCUMENTED
    (record,) = UsageRecord.objects.exclude(pk__in=before)
    assert record.error_type == record_type
    assert record.error_type in RECORDED


def test_the_old_tool_error_type_never_reaches_the_client(gateway):
    with_account(gateway, CUT_TOOL)

    response = send(gateway, body=BODY | {"tools": [EXEC]})

    assert "upstream_tool_json_error" not in response.text
    assert "Upstream ended before completing tool_use" in response.json()["error"]["message"]
