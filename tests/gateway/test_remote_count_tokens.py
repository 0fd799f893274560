"""Remote count_tokens (countTokensApiUrl / Key / AuthType): asked with a bounded timeout, the
local estimate on any failure. The remote API is a small HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from credentials.models import GatewaySettings
from gateway.api import remote_count

BODY = {"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "Count me"}]}


class Counter(BaseHTTPRequestHandler):
    answer: tuple[int, bytes] = (200, b'{"input_tokens": 4242}')
    delay = 0.0
    seen: list[tuple[dict, dict]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        type(self).seen.append((dict(self.headers), body))
        time.sleep(self.delay)
        status, payload = self.answer
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def counter():
    Counter.seen, Counter.delay = [], 0.0
    Counter.answer = (200, b'{"input_tokens": 4242}')
    server = ThreadingHTTPServer(("127.0.0.1", 0), Counter)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1/messages/count_tokens"
    server.shutdown()
    server.server_close()


def configure(url: str, *, auth_type: str = "x-api-key") -> None:
    settings, _ = GatewaySettings.objects.get_or_create(pk=GatewaySettings.singleton_id)
    settings.count_tokens_api_url = url
    settings.count_tokens_api_key = "remote-secret"
    settings.count_tokens_auth_type = auth_type
    settings.save()


def count(gateway) -> int:
    response = httpx.post(
        gateway.base_url + "/v1/messages/count_tokens",
        json=BODY,
        headers={"x-api-key": gateway.key},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return response.json()["input_tokens"]


def test_without_a_url_the_count_is_local(gateway):
    assert 0 < count(gateway) < 100


@pytest.mark.parametrize(
    ("auth_type", "header", "value"),
    [
        ("x-api-key", "x-api-key", "remote-secret"),
        ("bearer", "authorization", "Bearer remote-secret"),
    ],
)
def test_the_remote_api_is_asked_with_its_key(gateway, counter, auth_type, header, value):
    configure(counter, auth_type=auth_type)

    assert count(gateway) == 4242

    (headers, body) = Counter.seen[-1]
    assert {k.lower(): v for k, v in headers.items()}[header] == value
    assert body == BODY


@pytest.mark.parametrize(
    "answer",
    [(500, b'{"error": "down"}'), (200, b"not json"), (200, b'{"tokens": 3}'), (200, b"[]")],
    ids=["500", "not-json", "no-count", "a-list"],
)
def test_a_failing_remote_api_falls_back_to_the_local_estimate(gateway, counter, answer):
    Counter.answer = answer
    configure(counter)

    assert 0 < count(gateway) < 100


def test_a_slow_remote_api_is_given_up_within_the_timeout(gateway, counter, monkeypatch):
    monkeypatch.setattr(remote_count, "TIMEOUT", httpx.Timeout(0.3))
    Counter.delay = 3.0
    configure(counter)

    started = time.monotonic()
    tokens = count(gateway)

    assert 0 < tokens < 100
    assert time.monotonic() - started < 2.5
