"""OpenAI-compatible endpoints (spec kiro-protocol §12): /v1/chat/completions, /v1/responses.

Each runs the normal /v1/messages pipeline non-streaming (pool, accounting, traces alike) and
translates the result; streams are synthesized after completion, as in Z, but their head is
sent at once so that clients with short first-byte timeouts (Codex) keep waiting.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt

from gateway import views
from gateway.protocol import openai
from gateway.protocol.models import ConversionError
from gateway.responses import SSE_HEADERS

log = logging.getLogger(__name__)


def _json(payload: dict[str, Any], status: int = 200) -> JsonResponse:
    return JsonResponse(payload, status=status, json_dumps_params={"ensure_ascii": False})


async def _inner(
    body: dict[str, Any], request: HttpRequest, endpoint: str
) -> tuple[int, dict[str, Any]] | JsonResponse:
    """Authenticate, then run the Anthropic body; return (status, JSON) or a refusal."""
    key, config, draft, started = await views._start(request, endpoint)
    if key is None:
        await views.dispatch.write_local(
            draft,
            status=401,
            started=started,
            error_type="authentication_error",
            message="Invalid API key",
        )
        return _json(
            openai.openai_error(
                401, "Invalid API key", "invalid_request_error", code="invalid_api_key"
            ),
            401,
        )
    try:
        response = await views.serve_body(body, key, config, draft, started)
    except Exception as exc:  # still exactly one usage record, which settles the reservation
        log.exception("unexpected error serving %s", endpoint)
        draft.error_message = f"{exc.__class__.__name__}: {exc}"[:500]
        await views._reject(draft, started, views.INTERNAL_ERROR, "internal_error")
        return 500, views.INTERNAL_ERROR.body()
    return response.status_code, json.loads(response.content)


def _parse(request: HttpRequest) -> dict[str, Any]:
    try:
        return views._parse_body(request)
    except views.TooLarge:
        raise ConversionError("body", "the request body is too large") from None


async def _openai_endpoint(
    request: HttpRequest,
    endpoint: str,
    to_anthropic: Callable[[dict[str, Any]], dict[str, Any]],
    render: Callable[[dict[str, Any], bool], bytes | dict[str, Any]],
    head: Callable[[], bytes],
    failed: Callable[[int, dict[str, Any]], bytes],
) -> HttpResponse:
    if request.method != "POST":
        return _json(openai.openai_error(405, "Use POST."), 405)
    try:
        body = _parse(request)
        stream = openai.client_wants_stream(body)
        anthropic_body = to_anthropic(body)
    except ConversionError as exc:
        return _json(openai.conversion_error_body(exc), 400)
    if not stream:
        outcome = await _inner(anthropic_body, request, endpoint)
        if isinstance(outcome, JsonResponse):
            return outcome
        status, payload = outcome
        if status != 200:
            return _json(openai.anthropic_error_to_openai(status, payload), status)
        return _json(render(payload, False))  # type: ignore[arg-type]

    async def events() -> AsyncIterator[bytes]:
        yield head()
        outcome = await _inner(anthropic_body, request, endpoint)
        if isinstance(outcome, JsonResponse):
            yield failed(401, json.loads(outcome.content))
            return
        status, payload = outcome
        yield failed(status, payload) if status != 200 else render(payload, True)  # type: ignore[misc]

    return StreamingHttpResponse(events(), content_type="text/event-stream", headers=SSE_HEADERS)


@csrf_exempt
async def chat_completions(request: HttpRequest) -> HttpResponse:
    """POST /v1/chat/completions (spec §12.1)."""
    completion_id, created = openai.new_completion_id(), int(time.time())
    state: dict[str, Any] = {}

    def to_anthropic(body: dict[str, Any]) -> dict[str, Any]:
        state["model"] = str(body.get("model", ""))
        state["usage"] = openai.chat_include_usage(body)
        return openai.chat_to_anthropic(body, headers=request.headers)

    def render(message: dict[str, Any], streamed: bool) -> bytes | dict[str, Any]:
        if not streamed:
            return openai.anthropic_to_chat(
                message, model=state["model"], completion_id=completion_id, created=created
            )
        return openai.chat_stream_chunks(
            message,
            model=state["model"],
            include_usage=state["usage"],
            completion_id=completion_id,
            created=created,
            head=False,
        )

    def head() -> bytes:
        return openai.chat_stream_head(
            model=state["model"], completion_id=completion_id, created=created
        )

    def failed(status: int, payload: dict[str, Any]) -> bytes:
        error = openai.anthropic_error_to_openai(status, payload)["error"]
        return openai.chat_error_chunk(error["message"], error["type"], code=error.get("code"))

    return await _openai_endpoint(
        request, "/v1/chat/completions", to_anthropic, render, head, failed
    )


@csrf_exempt
async def responses(request: HttpRequest) -> HttpResponse:
    """POST /v1/responses (spec §12.2, Codex)."""
    response_id, created = openai.new_response_id(), int(time.time())
    state: dict[str, Any] = {}

    def to_anthropic(body: dict[str, Any]) -> dict[str, Any]:
        state["model"], state["request"] = str(body.get("model", "")), body
        return openai.responses_to_anthropic(body, headers=request.headers)

    def render(message: dict[str, Any], streamed: bool) -> bytes | dict[str, Any]:
        if not streamed:
            return openai.anthropic_to_responses(
                message,
                model=state["model"],
                request=state["request"],
                response_id=response_id,
                created_at=created,
            )
        return openai.responses_stream_events(
            message,
            model=state["model"],
            request=state["request"],
            response_id=response_id,
            created_at=created,
            head=False,
        )

    def head() -> bytes:
        return openai.responses_stream_head(
            model=state["model"],
            request=state["request"],
            response_id=response_id,
            created_at=created,
        )

    def failed(status: int, payload: dict[str, Any]) -> bytes:
        error = payload.get("error") if isinstance(payload.get("error"), dict) else {}
        return openai.responses_failed_event(
            message=str(error.get("message", "Upstream API request failed.")),
            error_type=str(error.get("type", "api_error")),
            model=state["model"],
            request=state["request"],
            response_id=response_id,
            created_at=created,
        )

    return await _openai_endpoint(request, "/v1/responses", to_anthropic, render, head, failed)
