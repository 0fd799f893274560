"""OpenTelemetry: one span per client request, a child per upstream attempt and per token
refresh, the trace id on the usage record; off by default; exported over OTLP/HTTP."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from credentials import tracing
from gateway.fakekiro.script import Script
from usage.models import UsageRecord

BODY = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 16,
    "messages": [{"role": "user", "content": "Hi"}],
}


@pytest.fixture
def spans():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use_provider(provider)
    yield exporter
    tracing.use_provider(None)


def send(gateway, body=BODY) -> httpx.Response:
    return httpx.post(
        gateway.base_url + "/v1/messages", json=body, headers={"x-api-key": gateway.key}, timeout=30
    )


def test_a_request_is_one_span_with_a_child_per_attempt_and_refresh(gateway, spans):
    _, failing = gateway.add_credential(priority=0)
    gateway.add_credential(priority=1)
    gateway.fake.script(Script.quota_exhausted(), account=failing.id)

    assert send(gateway).status_code == 200

    finished = spans.get_finished_spans()
    (request,) = [s for s in finished if s.name == "/v1/messages"]
    attempts = [s for s in finished if s.name == "kiro.attempt"]
    refreshes = [s for s in finished if s.name == "kiro.token_refresh"]
    assert [a.attributes["outcome"] for a in attempts] == ["quota_exhausted", "success"]
    assert [a.attributes["attempt"] for a in attempts] == [0, 1]
    assert len(refreshes) == 2
    for child in attempts + refreshes:
        assert child.parent.span_id == request.context.span_id
    attributes = request.attributes
    assert attributes["client_key"] == "test client"
    assert attributes["model.requested"] == "claude-sonnet-4-5"
    assert attributes["model.sent"] == "claude-sonnet-4.5"
    assert (attributes["status"], attributes["http.status_code"]) == ("success", 200)
    assert attributes["tokens.input"] > 0 and attributes["tokens.output"] > 0
    record = UsageRecord.objects.get()
    assert record.trace_id == format(request.context.trace_id, "032x")


def test_a_refused_request_has_its_span_with_the_error_type(gateway, spans):
    response = httpx.post(gateway.base_url + "/v1/messages", json=BODY, timeout=30)

    assert response.status_code == 401
    (request,) = spans.get_finished_spans()
    assert request.attributes["error.type"] == "authentication"
    assert not request.status.is_ok


def test_without_an_endpoint_tracing_is_off_and_records_carry_no_trace_id(gateway):
    gateway.add_credential()

    assert not tracing.ENABLED
    assert send(gateway).status_code == 200
    assert UsageRecord.objects.get().trace_id == ""


class Receiver(BaseHTTPRequestHandler):
    posts: list[tuple[str, str, bytes]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        type(self).posts.append((self.path, self.headers["content-type"], body))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_spans_go_over_otlp_http_to_the_configured_endpoint(gateway, monkeypatch):
    Receiver.posts = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv(
        "OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}"
    )
    monkeypatch.setenv("OTEL_SERVICE_NAME", "kiro-gateway-under-test")
    gateway.add_credential()
    try:
        assert tracing.configure()
        assert send(gateway).status_code == 200
        tracing.flush()
    finally:
        tracing.use_provider(None)
        server.shutdown()
        server.server_close()

    assert Receiver.posts
    path, content_type, body = Receiver.posts[0]
    assert (path, content_type) == ("/v1/traces", "application/x-protobuf")
    assert b"kiro-gateway-under-test" in body and b"/v1/messages" in body
