"""Bad input on every endpoint: a typed JSON error in the endpoint's shape and one record each.

The order is the same everywhere: the key (401), then the path and method (404, 405), then the
size (413), then the body (400).
"""

from __future__ import annotations

import json

import httpx
import pytest

from tests.malformed import POST_PATHS
from usage.models import UsageRecord, UsageStatus

pytestmark = pytest.mark.django_db(transaction=True)

OPENAI_PATHS = ("/v1/chat/completions", "/v1/responses")

BODY = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 64,
    "messages": [{"role": "user", "content": "hi"}],
}
BODIES = {  # a valid body per endpoint, the text of its one message being "hi"
    "/v1/chat/completions": {"model": "claude-sonnet-4-5", "messages": [BODY["messages"][0]]},
    "/v1/responses": {"model": "claude-sonnet-4-5", "input": "hi"},
}


def send(gateway, path, content, *, key=True, method="POST", headers=None):
    all_headers = {"content-type": "application/json", **(headers or {})}
    if key:
        all_headers["x-api-key"] = gateway.key
    return httpx.request(
        method, gateway.base_url + path, content=content, headers=all_headers, timeout=30
    )


def error_of(response: httpx.Response, path: str, status: int) -> dict:
    """Check a JSON error in the endpoint's shape; return its inner object."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json"), response.text
    body = response.json()
    if path in OPENAI_PATHS:
        assert set(body) == {"error"}
        assert set(body["error"]) == {"message", "type", "param", "code"}
    else:
        assert body["type"] == "error"
        assert set(body["error"]) == {"type", "message"}
    return body["error"]


def the_record(path: str) -> UsageRecord | None:
    count = UsageRecord.objects.count()
    assert count == 1, f"{count} usage records"
    return UsageRecord.objects.get()


# --- the cases of the issue ------------------------------------------------------------------


@pytest.mark.parametrize("path", POST_PATHS)
def test_a_hundred_thousand_brackets_get_a_400_and_a_record(gateway, path):
    error = error_of(send(gateway, path, b"[" * 100_000), path, 400)

    assert error["type"] == "invalid_request_error"
    assert "nests deeper than 128 levels" in error["message"]
    assert the_record(path).http_status == 400


def test_a_body_nested_up_to_the_limit_is_served(gateway):
    gateway.add_credential()
    deep = '{"a":' * 127 + "1" + "}" * 127  # 128 levels with the body itself
    body = json.dumps(BODY | {"metadata": "DEEP"}).replace('"DEEP"', deep)

    response = send(gateway, "/v1/messages", body.encode())

    assert response.status_code == 200, response.text


def test_a_body_nested_one_level_too_deep_is_refused(gateway):
    deep = "[" * 128 + "]" * 128  # 129 levels with the body itself
    body = json.dumps(BODY | {"metadata": "DEEP"}).replace('"DEEP"', deep)

    error = error_of(send(gateway, "/v1/messages", body.encode()), "/v1/messages", 400)

    assert "nests deeper" in error["message"]


@pytest.mark.parametrize("path", POST_PATHS)
def test_invalid_utf8_gets_a_400_and_a_record(gateway, path):
    content = json.dumps(BODY).encode().replace(b"hi", b"h\xffi")

    error = error_of(send(gateway, path, content), path, 400)

    assert "not valid UTF-8" in error["message"]
    assert the_record(path).status == UsageStatus.REJECTED


@pytest.mark.parametrize("path", POST_PATHS)
def test_a_raw_nul_byte_gets_a_400_and_a_record(gateway, path):
    content = json.dumps(BODIES.get(path, BODY)).encode().replace(b"hi", b"h\x00i")

    error = error_of(send(gateway, path, content), path, 400)

    assert "not valid JSON" in error["message"]
    the_record(path)


@pytest.mark.parametrize("path", ["/v1/messages", "/v1/chat/completions", "/v1/responses"])
def test_an_escaped_nul_in_text_is_served_and_recorded(gateway, path):
    gateway.add_credential()
    content = json.dumps(BODIES.get(path, BODY)).encode().replace(b"hi", b"h\\u0000i")

    response = send(gateway, path, content)

    assert response.status_code == 200, response.text
    assert UsageRecord.objects.get().status == UsageStatus.SUCCESS


def test_a_nul_in_the_model_name_is_refused_and_the_record_is_written(gateway):
    content = json.dumps(BODY).encode().replace(b"claude-sonnet-4-5", b"claude\\u0000")

    error_of(send(gateway, "/v1/messages", content), "/v1/messages", 400)

    assert UsageRecord.objects.get().status == UsageStatus.REJECTED


@pytest.mark.parametrize("field", ["system", "tools"])
@pytest.mark.parametrize("path", ["/v1/messages/count_tokens", "/cc/v1/messages/count_tokens"])
def test_count_tokens_refuses_a_number_for_system_or_tools(gateway, path, field):
    content = json.dumps(BODY | {field: 5}).encode()

    error = error_of(send(gateway, path, content), path, 400)

    assert error["message"].startswith(f"{field}: must be")
    assert UsageRecord.objects.get().http_status == 400


@pytest.mark.parametrize("field", ["messages", "tools", "system"])
@pytest.mark.parametrize("path", ["/v1/messages", "/cc/v1/messages"])
def test_a_field_of_the_wrong_type_gets_a_400_before_the_prompt_cache_looks(gateway, path, field):
    # the prompt-cache metering (on by default) reads the body before the conversion checks it
    content = json.dumps(BODY | {field: True}).encode()

    error = error_of(send(gateway, path, content), path, 400)

    assert error["message"].startswith(f"{field}: ")
    assert UsageRecord.objects.get().http_status == 400


@pytest.mark.parametrize("path", POST_PATHS)
def test_a_lone_surrogate_gets_a_400_not_a_500(gateway, path):
    gateway.add_credential()
    content = json.dumps(BODIES.get(path, BODY)).encode().replace(b"hi", b"\\ud800x")

    error = error_of(send(gateway, path, content), path, 400)

    assert error["type"] == "invalid_request_error"
    assert "lone UTF-16 surrogate" in error["message"]
    the_record(path)


def test_an_escaped_surrogate_pair_is_an_emoji_and_is_served(gateway):
    gateway.add_credential()
    content = json.dumps(BODY).encode().replace(b"hi", b"\\ud83d\\ude00")

    response = send(gateway, "/v1/messages", content)

    assert response.status_code == 200, response.text
    assert "😀" in response.json()["content"][0]["text"]


@pytest.mark.parametrize("path", ["/v1/messages", "/v1/messages/count_tokens"])
@pytest.mark.parametrize("value", ["NaN", "Infinity", "1e400"])
def test_numbers_json_has_no_form_for_are_refused(gateway, path, value):
    content = json.dumps(BODY | {"temperature": "X"}).encode().replace(b'"X"', value.encode())

    error = error_of(send(gateway, path, content), path, 400)

    assert "not valid JSON" in error["message"]


# --- size ------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", POST_PATHS)
def test_a_huge_body_gets_a_413_and_a_record(gateway, settings, path):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    content = json.dumps(BODY | {"system": "x" * 5000}).encode()

    error = error_of(send(gateway, path, content), path, 413)

    # OpenAI's shape says it with a code (gateway.protocol.errors.openai_error_fields)
    if path in OPENAI_PATHS:
        assert (error["type"], error["code"]) == ("invalid_request_error", "request_too_large")
    else:
        assert error["type"] == "request_too_large"
    assert UsageRecord.objects.get().http_status == 413


def test_a_huge_chunked_body_without_a_length_gets_a_413(gateway, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    chunks = iter([json.dumps(BODY).encode()[:-1], b', "system": "', b"x" * 5000, b'"}'])

    response = httpx.post(
        gateway.base_url + "/v1/messages",
        content=chunks,
        headers={"x-api-key": gateway.key},
        timeout=30,
    )

    assert "content-length" not in response.request.headers
    assert error_of(response, "/v1/messages", 413)["type"] == "request_too_large"


@pytest.mark.parametrize("path", POST_PATHS)
def test_the_key_is_checked_before_the_size_and_the_body(gateway, settings, path):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000

    huge = error_of(send(gateway, path, b"x" * 5000, key=False), path, 401)
    garbage = send(gateway, path, b"[" * 900, key=False)

    assert huge["message"] == "Invalid API key"
    assert garbage.status_code == 401, f"{garbage.status_code}: the body came first"
    assert UsageRecord.objects.count() == 2, "a record is missing"


# --- paths and methods -----------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/nothing-here", "/cc/v1/messages/nope", "/v1/"])
def test_an_unknown_path_gets_a_404_and_a_record(gateway, path):
    error = error_of(send(gateway, path, b""), path, 404)

    assert error["type"] == "not_found_error"
    assert path in error["message"]
    record = UsageRecord.objects.get()
    assert record.endpoint == ("/cc/v1/*" if path.startswith("/cc/") else "/v1/*")
    assert record.http_status == 404 and record.client_key_id is not None


@pytest.mark.parametrize("path", ["/v1/nothing-here", "/cc/v1/nope"])
def test_an_unknown_path_without_a_key_gets_a_401_first(gateway, path):
    error = error_of(send(gateway, path, b"", key=False), path, 401)

    assert error["type"] == "authentication_error"
    assert UsageRecord.objects.get().http_status == 401


@pytest.mark.parametrize("path", POST_PATHS)
def test_a_wrong_method_gets_a_405_in_the_endpoints_shape_and_a_record(gateway, path):
    response = send(gateway, path, b"", method="GET")

    error = error_of(response, path, 405)
    assert error["type"] == "invalid_request_error"
    assert response.headers["allow"] == "POST"
    record = UsageRecord.objects.get()
    assert (record.endpoint, record.http_status, record.status) == (path, 405, "rejected")


@pytest.mark.parametrize("path", POST_PATHS)
def test_a_wrong_method_without_a_key_gets_a_401_first(gateway, path):
    error = error_of(send(gateway, path, b"", method="PUT", key=False), path, 401)

    if path in OPENAI_PATHS:  # worded as the OpenAI views word it
        assert (error["type"], error["code"]) == ("invalid_request_error", "invalid_api_key")
    assert UsageRecord.objects.get().http_status == 401


def test_models_only_answers_get(gateway):
    response = send(gateway, "/v1/models", b"{}")

    assert error_of(response, "/v1/models", 405)["type"] == "invalid_request_error"
    assert response.headers["allow"] == "GET, HEAD"
    assert UsageRecord.objects.get().endpoint == "/v1/models"


# --- what escapes a view ---------------------------------------------------------------------


def test_a_bad_host_header_is_served_as_json_with_a_record(gateway):
    # The API never builds URLs from the Host header, so it does not check it (no
    # middleware runs on /v1); a DisallowedHost raised anyway is answered below.
    gateway.add_credential()

    response = send(gateway, "/v1/messages", json.dumps(BODY).encode(), headers={"host": "evil"})

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert UsageRecord.objects.count() == 1


@pytest.mark.parametrize(
    ("name", "status", "error_type", "record_type"),
    [
        ("DisallowedHost", 400, "invalid_request_error", "invalid_host"),
        ("RequestDataTooBig", 413, "request_too_large", "request_too_large"),
        ("SuspiciousOperation", 400, "invalid_request_error", "invalid_request"),
        ("PermissionDenied", 403, "permission_error", "permission"),
    ],
)
def test_what_django_raises_before_the_view_is_answered_as_json(
    gateway, monkeypatch, name, status, error_type, record_type
):
    from django.core import exceptions

    from gateway.api import views

    def refuse(*args, **kwargs):
        raise getattr(exceptions, name)("refused")

    monkeypatch.setattr(views, "_begin", refuse)

    error = error_of(send(gateway, "/v1/messages", b"{}"), "/v1/messages", status)

    assert error["type"] == error_type
    assert "refused" not in error["message"]  # Django's wording stays in the log
    record = UsageRecord.objects.get()
    assert (record.endpoint, record.http_status, record.error_type) == (
        "/v1/messages",
        status,
        record_type,
    )


def test_a_bug_before_the_key_is_a_json_500_with_a_record(gateway, monkeypatch):
    from gateway.api import views

    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(views, "_begin", broken)

    error = error_of(send(gateway, "/cc/v1/messages", b"{}"), "/cc/v1/messages", 500)

    assert error["type"] == "api_error"
    record = UsageRecord.objects.get()
    assert (record.status, record.error_type) == ("error", "internal_error")
    assert record.error_message == "RuntimeError: a bug"


def test_a_bug_on_an_openai_path_is_a_json_500_in_openais_shape(gateway, monkeypatch):
    from gateway.api import views

    async def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(views, "begin", broken)
    content = json.dumps(BODIES["/v1/chat/completions"]).encode()

    error = error_of(send(gateway, "/v1/chat/completions", content), "/v1/chat/completions", 500)

    assert error["type"] == "server_error"  # OpenAI's type for Anthropic's api_error
    assert UsageRecord.objects.get().endpoint == "/v1/chat/completions"


def test_a_bug_after_the_key_is_recorded_with_the_key(gateway, monkeypatch):
    from gateway.api import views

    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(views, "resolve_model", broken)

    error_of(send(gateway, "/v1/messages/count_tokens", json.dumps(BODY).encode()), "x", 500)

    record = UsageRecord.objects.get()
    assert record.client_key_id is not None
    assert (record.endpoint, record.error_type) == ("/v1/messages/count_tokens", "internal_error")


def test_a_bug_in_the_web_search_loop_ends_its_stream_with_an_error_event(gateway, monkeypatch):
    from gateway.protocol.websearch_loop import WebSearchLoop

    gateway.add_credential()

    def broken(self, events, *, complete=True):
        raise RuntimeError("a bug")

    monkeypatch.setattr(WebSearchLoop, "feed_round", broken)
    tools = [
        {"type": "web_search_20250305", "name": "web_search"},
        {"name": "Read", "input_schema": {"type": "object"}},
    ]

    response = send(
        gateway, "/v1/messages", json.dumps(BODY | {"tools": tools, "stream": True}).encode()
    )

    assert response.status_code == 200
    last = json.loads(response.text.rstrip().splitlines()[-1].removeprefix("data: "))
    assert last["error"]["type"] == "api_error"
    record = UsageRecord.objects.get()
    assert (record.status, record.error_type) == ("error", "internal_error")


async def test_a_query_string_that_is_not_utf8_gets_json_and_a_record(transactional_db):
    from kiro_site.asgi import application

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/messages",
        "raw_path": b"/v1/messages",
        "query_string": b"beta=\xff",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1")],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 80),
    }
    sent = []

    async def receive():
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send_(message):
        sent.append(message)

    await application(scope, receive, send_)

    start, body = sent[0], b"".join(m.get("body", b"") for m in sent[1:])
    assert start["status"] == 400
    assert dict(start["headers"])[b"Content-Type"].startswith(b"application/json")
    assert json.loads(body)["error"]["type"] == "invalid_request_error"
    assert await UsageRecord.objects.acount() == 1
