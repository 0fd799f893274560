"""Web search requests (spec kiro-protocol §11): the MCP path and Z's mixed-tools loop.

The pure parts live in gateway/protocol/websearch.py and websearch_loop.py; this module runs
the upstream calls through the same pool and retry loop as chat turns and records one usage
record per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable
from typing import Any

from django.http import HttpResponse, JsonResponse, StreamingHttpResponse

from credentials.selectors import GatewayConfig, KeyIdentity
from gateway.api import accounting, dispatch
from gateway.api.responses import SSE_HEADERS, error_response
from gateway.protocol.convert import ConvertOptions
from gateway.protocol.errors import ClientError, ErrorType, UpstreamFailure, anthropic_body
from gateway.protocol.sse import PING, encode
from gateway.protocol.tokens import count_all_tokens
from gateway.protocol.translate import TranslationResult
from gateway.protocol.websearch import (
    SearchOutcome,
    extract_query,
    mcp_request,
    parse_mcp_response,
    render_search_message,
    render_search_stream,
)
from gateway.protocol.websearch_loop import WebSearchLoop
from usage.models import UsageStatus
from usage.services import UsageDraft

log = logging.getLogger(__name__)
INTERNAL_ERROR_MESSAGE = "The gateway hit an internal error; it was logged. Please retry."


async def _search(
    key: KeyIdentity, config: GatewayConfig, draft: UsageDraft, query: str
) -> SearchOutcome:
    """Run one MCP web_search call through the pool (raises DispatchError)."""
    _, payload = mcp_request(query)
    request = dispatch.Request(key=key, config=config, draft=draft, model=None, mcp_body=payload)
    connected = await dispatch.connect(request)
    return parse_mcp_response(connected.response.status_code, connected.response.content)


async def single_search(
    *,
    key: KeyIdentity,
    config: GatewayConfig,
    draft: UsageDraft,
    body: dict[str, Any],
    started: float,
) -> HttpResponse:
    """Answer a request whose only tool is web_search with Kiro's MCP search (§11.2–§11.4)."""
    query = extract_query(body)  # ConversionError -> 400 in the view
    input_tokens = count_all_tokens(
        str(body.get("model", "")),
        body.get("system"),
        body.get("messages") or [],
        body.get("tools") or [],
    )
    try:
        outcome = await _search(key, config, draft, query)
        if outcome.failed:
            raise outcome.failure()
    except asyncio.CancelledError:
        await _interrupted(draft, started)
        raise
    except dispatch.DispatchError as exc:
        return await _refuse(draft, started, exc.error, exc.error_type)
    except UpstreamFailure as failure:
        return await _refuse(draft, started, failure.error, failure.kind)
    draft.input_tokens = input_tokens
    model = str(body.get("model", ""))
    if draft.stream:
        payload = render_search_stream(query, outcome, model=model, input_tokens=input_tokens)
        response: HttpResponse = HttpResponse(
            payload, content_type="text/event-stream", headers=SSE_HEADERS
        )
    else:
        message = render_search_message(query, outcome, model=model, input_tokens=input_tokens)
        draft.output_tokens = int(message.get("usage", {}).get("output_tokens", 0))
        response = JsonResponse(message, json_dumps_params={"ensure_ascii": False})
    await accounting.write_local(draft, status=200, started=started)
    return response


async def _refuse(
    draft: UsageDraft, started: float, error: ClientError, error_type: str
) -> JsonResponse:
    draft.error_message = error.message
    await accounting.write_local(
        draft, status=error.status, started=started, error_type=error_type, message=error.message
    )
    return error_response(error)


async def _interrupted(draft: UsageDraft, started: float) -> None:
    """Record a request whose client left mid-way (exactly one record, shielded)."""
    draft.status, draft.error_type = UsageStatus.INTERRUPTED, ErrorType.CLIENT_DISCONNECTED
    draft.latency_ms = int((time.monotonic() - started) * 1000)
    await accounting.write_usage(draft)


async def _run_loop(
    loop: WebSearchLoop, key: KeyIdentity, config: GatewayConfig, draft: UsageDraft
) -> None:
    """Drive Z's agentic loop: chat rounds and the searches they ask for (§11.5)."""
    while not loop.done:
        conversion = loop.next_request()
        request = dispatch.Request(
            key=key,
            config=config,
            draft=draft,
            model=conversion.model.upstream_id,
            kiro_body=conversion.kiro_body,
        )
        connected = await dispatch.connect(request)
        events, broken = await dispatch.read_all(connected)
        complete = broken is None
        queries = loop.feed_round(events, complete=complete)
        if queries:
            loop.add_search_results([await _search(key, config, draft, q) for q in queries])


def _record(draft: UsageDraft, result: TranslationResult) -> None:
    draft.input_tokens = result.input_tokens
    draft.output_tokens = result.output_tokens
    draft.cache_creation_tokens = result.cache_creation_input_tokens
    draft.cache_read_tokens = result.cache_read_input_tokens
    draft.credits = result.credits


async def search_loop(
    *,
    key: KeyIdentity,
    config: GatewayConfig,
    draft: UsageDraft,
    body: dict[str, Any],
    options: ConvertOptions,
    started: float,
) -> HttpResponse:
    """Answer a request mixing web_search with other tools through the local loop."""
    loop = WebSearchLoop(body, options)  # ConversionError -> 400 in the view
    if not draft.stream:
        try:
            await _run_loop(loop, key, config, draft)
            message = loop.finish_message()
        except asyncio.CancelledError:
            _record(draft, loop.result)
            await _interrupted(draft, started)
            raise
        except dispatch.DispatchError as exc:
            _record(draft, loop.result)
            return await _refuse(draft, started, exc.error, exc.error_type)
        except UpstreamFailure as failure:
            _record(draft, loop.result)
            return await _refuse(draft, started, failure.error, failure.kind)
        _record(draft, loop.result)
        await accounting.write_local(draft, status=200, started=started)
        return JsonResponse(message, json_dumps_params={"ensure_ascii": False})
    return StreamingHttpResponse(
        _stream_loop(loop, key, config, draft, started),
        content_type="text/event-stream",
        headers=SSE_HEADERS,
    )


async def _stream_loop(
    loop: WebSearchLoop, key: KeyIdentity, config: GatewayConfig, draft: UsageDraft, started: float
) -> AsyncIterator[bytes]:
    """Ping while the loop works, then send the pre-built events (or an error event)."""
    draft.status = UsageStatus.INTERRUPTED
    draft.http_status = 200
    work = asyncio.ensure_future(_run_loop(loop, key, config, draft))
    try:
        yield PING
        async for chunk in _pings_until(work, config.stream_ping_interval_secs):
            yield chunk
        try:
            work.result()
            payload = loop.finish_stream()
            draft.status = UsageStatus.SUCCESS
        except dispatch.DispatchError as exc:
            payload = _error_event(exc.error.error_type, exc.error.message)
            draft.status, draft.error_type = UsageStatus.ERROR, exc.error_type
            draft.error_message = exc.error.message
        except UpstreamFailure as failure:
            payload = _error_event(failure.error_type, failure.message)
            draft.status, draft.error_type = UsageStatus.ERROR, failure.kind
            draft.error_message = failure.message
        except Exception as exc:  # a bug: the stream has started, so end it with an error event
            log.exception("unexpected error in the web search loop")
            payload = _error_event("api_error", INTERNAL_ERROR_MESSAGE)
            draft.status, draft.error_type = UsageStatus.ERROR, ErrorType.INTERNAL_ERROR
            draft.error_message = f"{exc.__class__.__name__}: {exc}"[:500]
        yield payload
    finally:
        work.cancel()
        with contextlib.suppress(BaseException):
            await work
        _record(draft, loop.result)
        draft.latency_ms = int((time.monotonic() - started) * 1000)
        await accounting.write_usage(draft)


async def _pings_until(work: Awaitable[Any], interval: float) -> AsyncIterator[bytes]:
    while True:
        done, _ = await asyncio.wait({work}, timeout=interval)  # type: ignore[arg-type]
        if done:
            return
        yield PING


def _error_event(error_type: str, message: str) -> bytes:
    return encode("error", anthropic_body(error_type, message))
