"""OpenTelemetry traces: one span per client request, a child per upstream attempt and per
token refresh. Off unless OTEL_EXPORTER_OTLP_ENDPOINT (or ..._TRACES_ENDPOINT) is set; the
standard OTEL_* variables (service name, headers, sampler, …) apply. When off, the serving path
pays one boolean test per span it would have made.

Here, in the lowest Django-side layer, because both token refresh (credentials) and the edge
(gateway.api) make spans. The request's span travels on its UsageDraft and in a ContextVar, so
that spans started deeper (a refresh) find their parent without being handed it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

log = logging.getLogger(__name__)
ENABLED = False
_tracer: trace.Tracer | None = None
_provider: TracerProvider | None = None
_request_span: ContextVar[Span | None] = ContextVar("request_span", default=None)

Attributes = Mapping[str, str | int | float | bool]


def configure() -> bool:
    """Turn tracing on when an OTLP endpoint is configured (once per process)."""
    if ENABLED:
        return True
    if not (
        os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    ):
        return False
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    service = os.environ.get("OTEL_SERVICE_NAME", "kiro-gateway")
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    use_provider(provider)
    log.info("OpenTelemetry traces go to %s", os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"))
    return True


def use_provider(provider: TracerProvider | None) -> None:
    """Trace with `provider` (None: off). configure() calls it; tests pass an in-memory one."""
    global ENABLED, _tracer, _provider
    _provider = provider
    _tracer = provider.get_tracer("kiro-gateway") if provider is not None else None
    ENABLED = provider is not None


def flush(timeout_millis: int = 5000) -> None:
    """Export the spans still buffered (at shutdown, and in tests)."""
    if _provider is not None:
        _provider.force_flush(timeout_millis)


def start_request(endpoint: str) -> Span | None:
    """Open the span of one client request and make it the parent of what follows in it."""
    if _tracer is None:
        return None
    span = _tracer.start_span(endpoint, kind=SpanKind.SERVER, attributes={"endpoint": endpoint})
    _request_span.set(span)
    return span


def trace_id(span: Span | None) -> str:
    """Return the span's trace id as 32 hex digits ("" without a span)."""
    if span is None:
        return ""
    return format(span.get_span_context().trace_id, "032x")


def finish(span: Span | None, attributes: Attributes, *, error: bool = False) -> None:
    """Set the final attributes of a span and end it."""
    if span is None:
        return
    span.set_attributes({k: v for k, v in attributes.items() if v is not None})
    if error:
        span.set_status(Status(StatusCode.ERROR))
    span.end()


def start_child(name: str, attributes: Attributes, parent: Span | None = None) -> Span | None:
    """Open a span under `parent`, else under the current request's span."""
    if _tracer is None:
        return None
    parent = parent if parent is not None else _request_span.get()
    context = trace.set_span_in_context(parent) if parent is not None else None
    return _tracer.start_span(name, context=context, attributes=dict(attributes))


@contextmanager
def child(name: str, attributes: Attributes) -> Iterator[Span | None]:
    """A span under the current request's span for the duration of the block."""
    span = start_child(name, attributes)
    try:
        yield span
    except BaseException as exc:
        if span is not None:
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR))
        raise
    finally:
        if span is not None:
            span.end()


def set_attributes(span: Span | None, attributes: Mapping[str, Any]) -> None:
    if span is not None:
        span.set_attributes({k: v for k, v in attributes.items() if v is not None})
