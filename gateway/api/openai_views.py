"""OpenAI-compatible endpoints (spec kiro-protocol §12): /v1/chat/completions, /v1/responses.

Each runs the `/v1/messages` pipeline on the converted body: the same one trip to the
database, pool, failover, accounting and traces. The checks come in the order of every
endpoint: the key (401, before the body is read), the size (413), the body (400), the key's
limits (429); each refusal is OpenAI-shaped JSON and leaves its usage record.

A stream is rendered live from the Kiro events (gateway/protocol/openai_stream.py): its head
goes out once an upstream accepted the request, so that failover happens before the first
byte as on `/v1/messages`, and an error before that is a JSON answer with its HTTP status.
Only a Responses body routed to the web-search loop (§11.5: Codex declares a hosted
web_search tool) is not live yet: its head goes out at once (Codex gives up on a silent
stream), keep-alives follow, and the events are synthesized from the finished answer, as Z
does for every stream. A chat body never reaches the loop: chat takes function tools only
(§12.1).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt

from gateway.api import views
from gateway.api.responses import SSE_HEADERS, error_response
from gateway.protocol import openai, openai_chat, openai_responses, openai_responses_events
from gateway.protocol.classify import ClientError
from gateway.protocol.convert import web_search_mode
from gateway.protocol.models import ConversionError
from gateway.protocol.openai_stream import KEEP_ALIVE, ChatStream, ResponsesStream
from gateway.protocol.translate import Renderer, TranslateOptions

log = logging.getLogger(__name__)


def _json(payload: dict[str, Any], status: int = 200, retry_after: object = None) -> JsonResponse:
    response = JsonResponse(payload, status=status, json_dumps_params={"ensure_ascii": False})
    if retry_after is not None:
        response["Retry-After"] = str(retry_after)
    return response


def _refusal(error: ClientError, problem: ConversionError | None) -> JsonResponse:
    """Answer a refusal of the gateway itself in OpenAI's shape."""
    if problem is not None:
        body = openai.conversion_error_body(problem)  # names the field as `param`
    elif error.status == 401:
        body = openai.openai_error(
            401, error.message, "invalid_request_error", code="invalid_api_key"
        )
    else:
        body = openai.anthropic_error_to_openai(error.status, error.body())
    return _json(body, error.status, error.retry_after)


class _Endpoint:
    """What differs between the two endpoints: conversion and renderings of the answer.

    `convert` runs in the worker thread of the request's first database trip and remembers
    what the rest needs from the client's body."""

    path = ""

    def __init__(self, request: HttpRequest) -> None:
        self.headers = request.headers
        self.created = int(time.time())
        self.body: Mapping[str, Any] = {}
        self.model = ""
        self.stream = False
        self.reasoning = False

    def convert(self, body: dict[str, Any]) -> dict[str, Any]:
        """Read the client's body and return the Anthropic one (ConversionError: a 400)."""
        self.body = body
        self.stream = openai.client_wants_stream(body)
        self.model = str(body.get("model", ""))
        converted = self.to_anthropic(body)
        # The client asked for reasoning: an effort, other than "none" (kept for GPT models).
        effort = converted.get("output_config", {}).get("effort")
        self.reasoning = effort is not None and effort != "none"
        return converted

    def to_anthropic(self, body: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def renderer(self, options: TranslateOptions) -> Renderer:
        """Make the live stream's renderer."""
        raise NotImplementedError

    def render(self, message: dict[str, Any]) -> dict[str, Any]:
        """Render a finished Anthropic message as the non-stream answer."""
        raise NotImplementedError


class _Chat(_Endpoint):
    path = "/v1/chat/completions"

    def __init__(self, request: HttpRequest) -> None:
        super().__init__(request)
        self.completion_id = openai_chat.new_completion_id()
        self.include_usage = False

    def to_anthropic(self, body: dict[str, Any]) -> dict[str, Any]:
        self.include_usage = openai_chat.chat_include_usage(body)
        return openai_chat.chat_to_anthropic(body, headers=self.headers)

    def renderer(self, options: TranslateOptions) -> Renderer:
        return ChatStream(
            options,
            completion_id=self.completion_id,
            created=self.created,
            include_usage=self.include_usage,
        )

    def render(self, message: dict[str, Any]) -> dict[str, Any]:
        return openai_chat.anthropic_to_chat(
            message, model=self.model, completion_id=self.completion_id, created=self.created
        )


class _Responses(_Endpoint):
    path = "/v1/responses"

    def __init__(self, request: HttpRequest) -> None:
        super().__init__(request)
        self.response_id = openai_responses.new_response_id()

    def to_anthropic(self, body: dict[str, Any]) -> dict[str, Any]:
        return openai_responses.responses_to_anthropic(body, headers=self.headers)

    def renderer(self, options: TranslateOptions) -> Renderer:
        return ResponsesStream(
            options, response_id=self.response_id, created_at=self.created, request=self.body
        )

    def render(self, message: dict[str, Any]) -> dict[str, Any]:
        return openai_responses.anthropic_to_responses(
            message,
            model=self.model,
            request=self.body,
            response_id=self.response_id,
            created_at=self.created,
        )

    def head(self) -> bytes:
        """Return the head of a synthesized stream, sent before the answer is ready."""
        return openai_responses_events.responses_stream_head(
            model=self.model,
            request=self.body,
            response_id=self.response_id,
            created_at=self.created,
        )

    def synthesized(self, message: dict[str, Any]) -> bytes:
        """Return the rest of a synthesized stream, from the finished message."""
        return openai_responses_events.responses_stream_events(
            message,
            model=self.model,
            request=self.body,
            response_id=self.response_id,
            created_at=self.created,
            head=False,
        )

    def failed(self, status: int, payload: dict[str, Any]) -> bytes:
        """Return the end of a synthesized stream whose answer failed."""
        error = payload.get("error") if isinstance(payload.get("error"), dict) else {}
        return openai_responses_events.responses_failed_event(
            message=str(error.get("message", "Upstream API request failed.")),
            error_type=str(error.get("type", "api_error")),
            model=self.model,
            request=self.body,
            response_id=self.response_id,
            created_at=self.created,
        )


async def _serve(request: HttpRequest, endpoint: _Endpoint) -> HttpResponse:
    if request.method != "POST":
        return _json(openai.openai_error(405, "Use POST."), 405)
    begun, draft, started = await views.begin(request, endpoint.path, convert=endpoint.convert)
    refused = begun.refused()
    if refused is not None:
        error, error_type = refused
        await views.record_rejection(draft, started, error, error_type)
        return _refusal(error, begun.problem)
    body, key = begun.body, begun.key
    assert body is not None and key is not None

    async def inner(live: bool) -> HttpResponse:
        """Serve the body; `live`: stream it through the endpoint's renderer."""
        body["stream"] = live
        try:
            return await views.serve_body(
                body,
                key,
                begun.config,
                draft,
                started,
                prefetched=begun.prefetched,
                cache=begun.cache,
                renderer=endpoint.renderer if live else None,
                reasoning=endpoint.reasoning,
            )
        except Exception as exc:  # never an HTML 500; still exactly one usage record
            log.exception("unexpected error serving %s", endpoint.path)
            draft.error_message = f"{exc.__class__.__name__}: {exc}"[:500]
            await views.record_rejection(draft, started, views.INTERNAL_ERROR, "internal_error")
            return error_response(views.INTERNAL_ERROR)

    if endpoint.stream and isinstance(endpoint, _Responses) and web_search_mode(body) != "none":
        # The web-search loop is not live yet: start it now, stream its answer when done.
        work = asyncio.ensure_future(inner(live=False))
        interval = begun.config.stream_ping_interval_secs
        return StreamingHttpResponse(
            _synthesized(endpoint, work, interval),
            content_type="text/event-stream",
            headers=SSE_HEADERS,
        )
    response = await inner(live=endpoint.stream)
    if isinstance(response, StreamingHttpResponse):
        return response
    payload = json.loads(response.content)
    if response.status_code != 200:
        return _json(
            openai.anthropic_error_to_openai(response.status_code, payload),
            response.status_code,
            response.get("Retry-After"),
        )
    return _json(endpoint.render(payload))


async def _synthesized(
    endpoint: _Responses, work: asyncio.Future[HttpResponse], interval: float
) -> AsyncIterator[bytes]:
    """Send the head at once and keep-alives while the answer is made, then its events."""
    try:
        yield endpoint.head()
        while True:
            done, _ = await asyncio.wait({work}, timeout=interval)
            if done:
                break
            yield KEEP_ALIVE
        response = work.result()
        payload = json.loads(response.content)
        if response.status_code != 200:
            yield endpoint.failed(response.status_code, payload)
        else:
            yield endpoint.synthesized(payload)
    finally:
        if not work.done():  # the client left: the inner request records it as interrupted
            work.cancel()
            with contextlib.suppress(BaseException):
                await work


@csrf_exempt
async def chat_completions(request: HttpRequest) -> HttpResponse:
    """POST /v1/chat/completions (spec §12.1)."""
    return await _serve(request, _Chat(request))


@csrf_exempt
async def responses(request: HttpRequest) -> HttpResponse:
    """POST /v1/responses (spec §12.2, Codex)."""
    return await _serve(request, _Responses(request))
