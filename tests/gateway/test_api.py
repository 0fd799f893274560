"""The /v1 and /cc/v1 surface: auth, Anthropic-style errors, count_tokens, models, /cc."""

from __future__ import annotations

import json

import anthropic
import httpx
import pytest

from gateway.fakekiro.script import Script
from usage.models import UsageRecord

pytestmark = pytest.mark.django_db(transaction=True)

BODY = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 64,
    "messages": [{"role": "user", "content": "hi"}],
}


def post(gateway, path="/v1/messages", *, body=None, headers=None, content=None):
    headers = {"x-api-key": gateway.key} if headers is None else headers
    if content is not None:
        return httpx.post(gateway.base_url + path, content=content, headers=headers, timeout=30)
    return httpx.post(
        gateway.base_url + path, json=BODY if body is None else body, headers=headers, timeout=30
    )


def assert_error(response: httpx.Response, status: int, error_type: str) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["type"] == "error"
    assert body["error"]["type"] == error_type
    return body["error"]["message"]


def test_it_refuses_a_missing_key_with_401(gateway):
    response = post(gateway, headers={})

    assert_error(response, 401, "authentication_error")
    record = UsageRecord.objects.get()
    assert (record.status, record.http_status, record.client_key) == ("rejected", 401, None)


def test_it_refuses_a_wrong_key_with_401(gateway):
    assert_error(post(gateway, headers={"x-api-key": "sk-nope"}), 401, "authentication_error")


def test_it_refuses_a_disabled_key(gateway):
    from credentials.models import ClientKey

    ClientKey.objects.update(enabled=False)

    assert_error(post(gateway), 401, "authentication_error")


def test_it_accepts_the_key_as_a_bearer_token_and_a_beta_query(gateway):
    gateway.add_credential()

    response = post(
        gateway,
        "/v1/messages?beta=true",
        headers={
            "Authorization": f"Bearer {gateway.key}",
            "anthropic-version": "2026-10-21",
            "anthropic-beta": "some-future-beta-2026-01-01",
        },
    )

    assert response.status_code == 200


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b"{not json", "not valid JSON"),
        (b"", "empty"),
        (b"[1, 2]", "JSON object"),
        (json.dumps({"max_tokens": 5, "messages": []}).encode(), "model"),
        (json.dumps(BODY | {"max_tokens": 0}).encode(), "max_tokens"),
        (json.dumps(BODY | {"messages": "hi"}).encode(), "messages"),
        (
            json.dumps(
                BODY | {"messages": [{"role": "user", "content": [{"type": "nope"}]}]}
            ).encode(),
            "nope",
        ),
    ],
)
def test_it_answers_bad_bodies_with_400_naming_the_problem(gateway, content, needle):
    message = assert_error(
        post(
            gateway,
            content=content,
            headers={"x-api-key": gateway.key, "content-type": "application/json"},
        ),
        400,
        "invalid_request_error",
    )

    assert needle in message
    assert UsageRecord.objects.get().status == "rejected"


def test_it_answers_an_oversized_body_with_413(gateway, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    big = BODY | {"messages": [{"role": "user", "content": "x" * 5000}]}

    assert_error(post(gateway, body=big), 413, "request_too_large")


def test_it_answers_unknown_api_paths_with_404(gateway):
    assert_error(post(gateway, "/v1/nothing-here"), 404, "not_found_error")


def test_count_tokens_estimates_locally(gateway):
    response = post(
        gateway,
        "/v1/messages/count_tokens",
        body={
            "model": "claude-sonnet-4-5",
            "messages": [{"role": "user", "content": "Hello, world!"}],
        },
    )

    assert response.json() == {"input_tokens": 4}
    assert gateway.fake.requests == []


def test_count_tokens_through_the_sdk_and_the_cc_path(gateway):
    for prefix in ("", "/cc"):
        client = anthropic.Anthropic(
            api_key=gateway.key, base_url=gateway.base_url + prefix, max_retries=0
        )
        counted = client.messages.count_tokens(
            model="claude-sonnet-4-5", messages=[{"role": "user", "content": "Hello, world!"}]
        )
        assert counted.input_tokens == 4


def test_models_lists_models_through_the_sdk(gateway):
    gateway.add_credential()
    client = anthropic.Anthropic(api_key=gateway.key, base_url=gateway.base_url, max_retries=0)

    ids = [model.id for model in client.models.list()]

    assert "claude-sonnet-4-5" in ids or any(i.startswith("claude-sonnet") for i in ids)


def test_models_lists_custom_models(gateway):
    from credentials.models import GatewaySettings

    gateway.add_credential()
    GatewaySettings.objects.update_or_create(
        pk=1,
        defaults={
            "custom_models": [
                {"id": "team-opus", "backendId": "claude-opus-4.5", "displayName": "Team Opus"}
            ]
        },
    )

    response = httpx.get(gateway.base_url + "/v1/models", headers={"x-api-key": gateway.key})

    assert "team-opus" in [m["id"] for m in response.json()["data"]]


def _events(text: str) -> list[tuple[str, dict]]:
    events = []
    for block in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((lines["event"], json.loads(lines["data"])))
    return events


def test_the_cc_stream_starts_with_a_ping_and_carries_exact_input_tokens(gateway):
    _, account = gateway.add_credential()
    gateway.fake.script(
        Script.text("Hello from the fake", chunks=3).with_usage(), account=account.id
    )

    response = post(gateway, "/cc/v1/messages", body=BODY | {"stream": True})

    events = _events(response.text)
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-accel-buffering"] == "no"
    assert events[0][0] == "ping"
    start = next(data for name, data in events if name == "message_start")
    delta = next(data for name, data in events if name == "message_delta")
    assert start["message"]["usage"]["input_tokens"] == delta["usage"]["input_tokens"]
    assert events[-1][0] == "message_stop"


def test_a_stream_that_breaks_mid_way_ends_with_an_error_event(gateway):
    _, account = gateway.add_credential()
    gateway.fake.script(
        Script.text("one two three four", chunks=4).reset_after(2), account=account.id
    )

    response = post(gateway, body=BODY | {"stream": True})

    names = [name for name, _ in _events(response.text)]
    assert names[-1] == "error"
    assert "message_stop" not in names
    record = UsageRecord.objects.get()
    assert record.status == "error"
    assert record.error_type


def test_every_request_leaves_exactly_one_usage_record(gateway):
    gateway.add_credential()

    post(gateway)
    post(gateway, body=BODY | {"stream": True})
    post(gateway, headers={})
    post(gateway, "/v1/messages/count_tokens", body=BODY)

    assert UsageRecord.objects.count() == 4


def test_a_silent_upstream_gets_pings_on_the_stream(gateway):
    from credentials.models import GatewaySettings

    GatewaySettings.objects.update_or_create(pk=1, defaults={"stream_ping_interval_secs": 1})
    _, account = gateway.add_credential()
    gateway.fake.script(
        Script.text("before") + Script.pause(2.5) + Script.text("after"), account=account.id
    )

    response = post(gateway, body=BODY | {"stream": True})

    names = [name for name, _ in _events(response.text)]
    assert names.count("ping") >= 2
    assert names[-1] == "message_stop"


def test_a_success_moves_the_credential_counters(gateway):
    from credentials.models import Credential

    credential, _ = gateway.add_credential()

    post(gateway)

    stored = Credential.objects.get(pk=credential.pk)
    assert stored.success_count == 1 and stored.last_used_at is not None
    record = UsageRecord.objects.get()
    assert record.credential_id == credential.pk and record.latency_ms > 0
    assert record.input_tokens > 0 and record.output_tokens > 0


def test_an_internal_error_is_anthropic_json_not_an_html_500(gateway, monkeypatch):
    from gateway.api import views

    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(views, "convert_request", broken)

    message = assert_error(post(gateway), 500, "api_error")

    assert "internal error" in message
    record = UsageRecord.objects.get()
    assert (record.status, record.error_type) == ("error", "internal_error")


def test_a_translation_bug_mid_stream_ends_with_an_error_event(gateway, monkeypatch):
    from gateway.protocol.anthropic_stream import StreamTranslator

    gateway.add_credential()

    def broken(self, events):
        raise RuntimeError("a bug")

    monkeypatch.setattr(StreamTranslator, "feed", broken)

    response = post(gateway, body=BODY | {"stream": True})

    names = [name for name, _ in _events(response.text)]
    assert names[0] == "message_start" and names[-1] == "error"
    assert UsageRecord.objects.get().status == "error"


def test_a_non_stream_answer_that_breaks_off_is_a_502_not_a_partial_message(gateway):
    _, account = gateway.add_credential()
    gateway.fake.script(
        Script.text("one two three four", chunks=4).reset_after(2), account=account.id
    )

    message = assert_error(post(gateway), 502, "api_error")

    assert "broke off" in message
    record = UsageRecord.objects.get()
    assert (record.status, record.error_type) == ("error", "stream_interrupted")
