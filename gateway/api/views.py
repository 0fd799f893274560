"""Thin async views of the client-facing edge: parse, authenticate, call one service, return."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt

from credentials import limits, selectors, tracing
from credentials.asyncdb import db
from credentials.selectors import GatewayConfig, KeyIdentity
from gateway.api import accounting, auth, dispatch, remote_count, resolution, search
from gateway.api.responses import SSE_HEADERS, error_response
from gateway.protocol import errors
from gateway.protocol.body import parse_body
from gateway.protocol.catalogue import ModelNotListed
from gateway.protocol.convert import (
    ConvertOptions,
    convert_request,
    web_search_mode,
)
from gateway.protocol.errors import ClientError, ErrorType
from gateway.protocol.images import ImageLimits
from gateway.protocol.models import (
    ConversionError,
    resolve_model,
)
from gateway.protocol.tokens import CacheEstimate, count_all_tokens
from gateway.protocol.tools import restore_tool_call
from gateway.protocol.translate import Renderer, TranslateOptions, new_message_id
from usage import prompt_cache
from usage.models import UsageStatus
from usage.services import UsageDraft, usage_draft_track

# --- helpers -----------------------------------------------------------------------------


def _bad_request(message: str) -> ClientError:
    return errors.invalid_request(message)


def _authenticate(presented: str | None) -> tuple[KeyIdentity | None, GatewayConfig]:
    """Look the key up and read the settings row in one trip to a worker thread."""
    key = selectors.client_key_by_hash(auth.key_hash(presented)) if presented else None
    return key, selectors.gateway_config()


class TooLarge(Exception):
    """The body is over KIRO_MAX_BODY_BYTES."""


def _parse_body(request: HttpRequest) -> dict[str, Any]:
    try:
        raw = request.body
    except RequestDataTooBig:
        raise TooLarge from None
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    if limit is not None and len(raw) > limit:
        raise TooLarge  # a chunked body has no Content-Length for Django to check
    return parse_body(raw)


def _validate_messages_body(body: dict[str, Any]) -> None:
    """Check what Anthropic's API itself requires before converting."""
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise ConversionError("model", "field required: a model id string")
    max_tokens = body.get("max_tokens")
    if max_tokens is not None and (
        isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens <= 0
    ):
        raise ConversionError("max_tokens", "must be a positive integer")
    if "stream" in body and not isinstance(body["stream"], bool):
        raise ConversionError("stream", "must be true or false")


def _draft(endpoint: str, key: KeyIdentity | None) -> UsageDraft:
    if key is None:
        draft = UsageDraft(endpoint=endpoint)
    else:
        draft = UsageDraft(
            endpoint=endpoint,
            client_key_id=key.id,
            key_name=key.name,
            key_is_system=key.is_system,
            key_last_used_at=key.last_used_at,
        )
    if tracing.ENABLED:  # the request's span ends when its record is written (accounting)
        draft.span = tracing.start_request(endpoint)
        draft.trace_id = tracing.trace_id(draft.span)
    return usage_draft_track(draft)


async def authenticate(
    request: HttpRequest, endpoint: str
) -> tuple[KeyIdentity | None, GatewayConfig, UsageDraft, float]:
    """Check the request's key (one database trip) and open its usage draft; a key of None
    means 401. Returns the key, the gateway settings, the draft and the start time."""
    started = time.monotonic()
    task = asyncio.ensure_future(db(_authenticate, auth.presented_key(request)))
    try:
        key, config = await asyncio.shield(task)
    except asyncio.CancelledError:  # the client left: still one record
        with contextlib.suppress(Exception):
            key, _ = await task
            await record_interrupted(_draft(endpoint, key), started)
        raise
    return key, config, _draft(endpoint, key), started


@dataclass(slots=True)
class Begun:
    """What a chat request learns in its one trip to the database before going upstream."""

    key: KeyIdentity | None
    config: GatewayConfig
    body: dict[str, Any] | None = None  # the Anthropic body (converted, for OpenAI clients)
    error: ClientError | None = None  # the body is malformed or too large
    problem: ConversionError | None = None  # what is malformed (OpenAI names it as `param`)
    refusal: tuple[ClientError, str] | None = None  # a limit of the key refused it
    reservation: limits.Reservation | None = None
    prefetched: dispatch.Prefetched | None = None
    cache: CacheEstimate | None = None  # the simulated prompt cache's split (usage.prompt_cache)

    def refused(self) -> tuple[ClientError, str | None] | None:
        """Return the refusal to answer with, and its error type, in the order every endpoint
        checks: the key (401), the size (413), the body (400), the key's limits (429)."""
        if self.key is None:
            return INVALID_KEY, None
        if self.error is not None:
            return self.error, None
        return self.refusal


Convert = Callable[[dict[str, Any]], dict[str, Any]]


def _begin(presented: str | None, request: HttpRequest, convert: Convert | None = None) -> Begun:
    """Authenticate, parse the body, reserve under the key's limits, and read the pool and
    the credential of the first attempt: one worker-thread trip, where each of these used to
    take its own (PERF-NOTES: each trip costs a thread hand-off), and one statement for the
    key and its pool (selectors.request_start; on Postgres each statement is a round trip).
    The body is only parsed for a valid key, so an unauthenticated client costs one lookup.
    `convert` turns another API's body into an Anthropic one (ConversionError: a 400)."""
    start = selectors.request_start(auth.key_hash(presented)) if presented else None
    key = start.key if start is not None else None
    begun = Begun(key, selectors.gateway_config())
    if key is None:
        return begun
    try:
        body = begun.body = _parse_body(request)
        if convert is not None:
            body = begun.body = convert(body)
    except ConversionError as exc:
        begun.error, begun.problem = _bad_request(str(exc)), exc
        return begun
    except TooLarge:
        begun.error = TOO_LARGE
        return begun
    try:
        begun.reservation = _reserve_now(body, key)
    except limits.LimitExceeded as exc:
        begun.refusal = _refusal(exc)
        return begun
    config = begun.config
    if config.prompt_cache_metering:
        begun.cache = prompt_cache.meter(body, key_id=key.id, system_key=key.is_system)
    listed = resolution.listed_at_start(start.candidates, key.group)
    model = resolution.first_model(body, config, listed)
    begun.prefetched = dispatch.prefetch_pool(key, config, model, start, catalogue=listed)
    return begun


def _has_images(value: object) -> bool:
    """Tell whether any content block, at any depth (tool results), is an image."""
    if isinstance(value, list):
        return any(_has_images(item) for item in value)
    if isinstance(value, dict):
        if value.get("type") == "image":
            return True
        content = value.get("content")
        return isinstance(content, list) and _has_images(content)
    return False


async def record_rejection(
    draft: UsageDraft, started: float, error: ClientError, error_type: str | None = None
) -> None:
    """Write the usage record of a request refused with `error` before going upstream."""
    await accounting.write_local(
        draft,
        status=error.status,
        error_type=error_type or error.kind,
        message=error.message,
        started=started,
    )


async def _reject(
    draft: UsageDraft, started: float, error: ClientError, error_type: str | None = None
) -> JsonResponse:
    await record_rejection(draft, started, error, error_type)
    return error_response(error)


log = logging.getLogger(__name__)
INVALID_KEY = errors.authentication("Invalid API key")
TOO_LARGE = errors.too_large("The request body is too large.")
INTERNAL_ERROR = errors.internal_error()


def image_limits() -> ImageLimits:
    """Return the image resize limits of the environment (KIRO_RS_IMAGE_*, README)."""
    return ImageLimits(
        resize=settings.KIRO_IMAGE_RESIZE,
        max_long_side=settings.KIRO_IMAGE_MAX_LONG_SIDE,
        max_base64_bytes=settings.KIRO_IMAGE_MAX_BYTES,
        jpeg_quality=settings.KIRO_IMAGE_JPEG_QUALITY,
    )


# --- client key limits (credentials/limits.py) -------------------------------------------


def _input_estimate(body: dict[str, Any]) -> int:
    """Estimate the body's input tokens locally, before it is validated (0 if malformed)."""
    system, messages_, tools = body.get("system"), body.get("messages"), body.get("tools")
    try:
        return count_all_tokens(
            "",
            system if isinstance(system, str | list) else None,
            messages_ if isinstance(messages_, list) else [],
            tools if isinstance(tools, list) else [],
        )
    except (TypeError, ValueError):
        return 0


def _reserve_now(body: dict[str, Any], key: KeyIdentity) -> limits.Reservation:
    """Reserve the request under the key's limits (sync); a key without limits holds nothing."""
    if not key.limited:
        return limits.Reservation(key.id)
    return limits.limit_reserve(key_id=key.id, estimate_tokens=_input_estimate(body))


def _refusal(exc: limits.LimitExceeded) -> tuple[ClientError, str]:
    refusal = exc.refusal
    error = errors.rate_limited(refusal.message, refusal.retry_after, ErrorType(refusal.reason))
    return error, error.kind


async def _reserve(
    body: dict[str, Any], key: KeyIdentity, draft: UsageDraft
) -> tuple[ClientError, str] | None:
    """Reserve the request under the key's limits; return the 429 and its reason if refused."""
    if draft.reservation is not None:
        return None  # reserved already (_begin)
    if not key.limited:
        draft.reservation = limits.Reservation(key.id)
        return None
    task = asyncio.ensure_future(db(_reserve_now, body, key))
    try:
        draft.reservation = await asyncio.shield(task)
    except limits.LimitExceeded as exc:
        return _refusal(exc)
    except asyncio.CancelledError:  # keep what was taken: the caller's record settles it
        with contextlib.suppress(Exception):
            draft.reservation = await task
        raise
    return None


# --- /v1/messages ------------------------------------------------------------------------


async def begin(
    request: HttpRequest, endpoint: str, *, convert: Convert | None = None
) -> tuple[Begun, UsageDraft, float]:
    """Run a chat request's first database trip (`_begin`); return what it learned, the
    usage draft (holding the reservation) and the start time. A client that leaves meanwhile
    still gets its one record."""
    started = time.monotonic()
    task = asyncio.ensure_future(db(_begin, auth.presented_key(request), request, convert))
    try:
        begun = await asyncio.shield(task)
    except asyncio.CancelledError:
        await _left_during_begin(task, endpoint, started)
        raise
    draft = _draft(endpoint, begun.key)
    draft.reservation = begun.reservation
    return begun, draft, started


async def _messages(request: HttpRequest, *, cc_mode: bool) -> HttpResponse:
    endpoint = "/cc/v1/messages" if cc_mode else "/v1/messages"
    begun, draft, started = await begin(request, endpoint)
    refused = begun.refused()
    if refused is not None:
        return await _reject(draft, started, *refused)
    key = begun.key
    assert key is not None and begun.body is not None
    try:
        return await serve_body(
            begun.body,
            key,
            begun.config,
            draft,
            started,
            cc_mode=cc_mode,
            prefetched=begun.prefetched,
            cache=begun.cache,
        )
    except Exception as exc:  # never an HTML 500; still exactly one usage record
        log.exception("unexpected error serving %s", endpoint)
        draft.error_message = f"{exc.__class__.__name__}: {exc}"[:500]
        return await _reject(draft, started, INTERNAL_ERROR, "internal_error")


async def _left_during_begin(task: asyncio.Future, endpoint: str, started: float) -> None:
    """The client left during the first database trip: still exactly one usage record, and
    the reservation that trip may have taken is settled by writing it."""
    try:
        begun: Begun = await task
    except Exception:
        log.exception("the first database trip of %s failed after the client left", endpoint)
        return
    draft = _draft(endpoint, begun.key)
    draft.reservation = begun.reservation
    await record_interrupted(draft, started)


async def record_interrupted(draft: UsageDraft, started: float) -> None:
    """Write the record of a request whose client left before it had one (settling its
    reservation); nothing if it has one already."""
    if draft.written:
        return
    draft.status, draft.error_type = UsageStatus.INTERRUPTED, ErrorType.CLIENT_DISCONNECTED
    draft.latency_ms = int((time.monotonic() - started) * 1000)
    await accounting.write_usage(draft)


async def serve_body(
    body: dict[str, Any],
    key: KeyIdentity,
    config: GatewayConfig,
    draft: UsageDraft,
    started: float,
    *,
    cc_mode: bool = False,
    prefetched: dispatch.Prefetched | None = None,
    renderer: Callable[[TranslateOptions], Renderer] | None = None,
    reasoning: bool = False,
    cache: CacheEstimate | None = None,
) -> HttpResponse:
    """Serve one Anthropic Messages body (also the inner request of the OpenAI endpoints).

    `renderer` makes the stream's renderer (the OpenAI endpoints'; Anthropic SSE without);
    `reasoning` shows native reasoning as thinking though the body asked for none (§12);
    `cache` splits the input into uncached, cache creation and cache read (None: as the
    upstream reports it)."""
    try:
        refused = await _reserve(body, key, draft)
        if refused is not None:
            return await _reject(draft, started, *refused)
        # Every exit writes the usage record, which settles the reservation (dispatch).
        return await _serve_body(
            body,
            key,
            config,
            draft,
            started,
            cc_mode=cc_mode,
            prefetched=prefetched,
            renderer=renderer,
            reasoning=reasoning,
            cache=cache,
        )
    except asyncio.CancelledError:  # the client left, maybe before any record was written
        await record_interrupted(draft, started)
        raise


async def _serve_body(
    body: dict[str, Any],
    key: KeyIdentity,
    config: GatewayConfig,
    draft: UsageDraft,
    started: float,
    *,
    cc_mode: bool,
    prefetched: dispatch.Prefetched | None = None,
    renderer: Callable[[TranslateOptions], Renderer] | None = None,
    reasoning: bool = False,
    cache: CacheEstimate | None = None,
) -> HttpResponse:
    try:
        _validate_messages_body(body)
        draft.model_requested = str(body.get("model", ""))
        draft.stream = body.get("stream") is True
        # spec 3.17: web search is routed before conversion; an MCP search has no model.
        mode = web_search_mode(body)
        if mode == "only":
            return await search.single_search(
                key=key, config=config, draft=draft, body=body, started=started
            )
        prefetched, listed = await resolution.resolvable(key, config, prefetched)
        options = ConvertOptions(
            image_limits=image_limits(),
            custom_models=resolution.custom_models(config),
            catalogue=resolution.catalogue(config, listed),
            tool_mode=config.tool_compatibility_mode,
            endpoint="ide",  # adapted per credential in dispatch (endpoint, profileArn)
        )
        # Resolved before routing, so that a strict refusal and the record's sent id and
        # rule hold on every path (the mixed web-search loop converts in its own rounds).
        resolved = resolution.resolve(body["model"], config, listed)
        draft.model_sent = resolved.upstream_id
        if resolved.substitution is not None:
            draft.normalizer_rules = [resolved.substitution]
        if mode == "mixed":
            return await search.search_loop(
                key=key, config=config, draft=draft, body=body, options=options, started=started
            )
        if _has_images(body.get("messages")):
            # Images may be resized: keep Pillow's CPU time off the event loop.
            conversion = await sync_to_async(convert_request, thread_sensitive=False)(
                body, options=options
            )
        else:  # text only: converting costs less than a trip to a worker thread
            conversion = convert_request(body, options=options)
    except ModelNotListed as exc:
        return await _reject(draft, started, errors.not_found(str(exc), ErrorType.MODEL_NOT_FOUND))
    except ConversionError as exc:
        return await _reject(draft, started, _bad_request(str(exc)))
    except TooLarge:
        return await _reject(draft, started, TOO_LARGE)
    draft.model_sent = conversion.model.upstream_id
    draft.normalizer_rules = [str(rule) for rule in conversion.rules]
    tool_names = conversion.tool_name_map
    translate = TranslateOptions(
        model=draft.model_requested,
        message_id=new_message_id(),
        thinking=conversion.thinking.enabled,
        input_tokens=count_all_tokens(
            conversion.model.upstream_id,
            body.get("system"),
            body.get("messages") or [],
            body.get("tools") or [],
        ),
        context_window=conversion.model.context_window,
        tool_names=tool_names,
        declared_tools=frozenset(
            t.get("name") for t in body.get("tools") or [] if isinstance(t, dict) and t.get("name")
        ),
        cc_mode=cc_mode and draft.stream,
        extract_thinking=config.extract_thinking,
        restore_tool_input=lambda name, value: restore_tool_call(name, value, tool_names)[1],
        reasoning=reasoning,
        cache=cache,
    )
    gateway_request = dispatch.Request(
        key=key,
        config=config,
        model=conversion.model.upstream_id,
        kiro_body=conversion.kiro_body,
        translate=translate,
        draft=draft,
        started=started,
        prefetched=prefetched,
    )
    try:
        connected = await dispatch.connect(gateway_request)
    except dispatch.DispatchError as exc:
        draft.error_message = exc.error.message
        return await _reject(draft, started, exc.error, exc.error_type)
    except asyncio.CancelledError:
        # The client left during the attempts (e.g. a backoff): still exactly one record.
        draft.status, draft.error_type = UsageStatus.INTERRUPTED, ErrorType.CLIENT_DISCONNECTED
        draft.latency_ms = int((time.monotonic() - started) * 1000)
        await accounting.write_usage(draft)
        raise
    draft.http_status = 200
    if draft.stream:
        response = StreamingHttpResponse(
            dispatch.relay(gateway_request, connected, renderer(translate) if renderer else None),
            content_type="text/event-stream",
            headers=SSE_HEADERS,
        )
        return response
    status, payload = await dispatch.collect(gateway_request, connected)
    draft.http_status = status
    return JsonResponse(payload, status=status, json_dumps_params={"ensure_ascii": False})


@csrf_exempt
async def messages(request: HttpRequest) -> HttpResponse:
    """POST /v1/messages."""
    return await _messages(request, cc_mode=False)


@csrf_exempt
async def cc_messages(request: HttpRequest) -> HttpResponse:
    """POST /cc/v1/messages: holds the stream until input usage is exact (spec §6.11)."""
    return await _messages(request, cc_mode=True)


@csrf_exempt
async def count_tokens(request: HttpRequest) -> HttpResponse:
    """POST /v1/messages/count_tokens: the remote counter when configured, else a local
    estimate (spec §10)."""
    key, config, draft, started = await authenticate(request, request.path)
    if key is None:
        return await _reject(draft, started, INVALID_KEY)
    try:
        body = _parse_body(request)
        model = body.get("model")
        if not isinstance(model, str) or not model.strip():
            raise ConversionError("model", "field required: a model id string")
        messages_ = body.get("messages")
        if not isinstance(messages_, list):
            raise ConversionError("messages", "field required: a list of messages")
        resolved = resolve_model(model, custom_models=resolution.custom_models(config))
        tokens = count_all_tokens(
            resolved.upstream_id, body.get("system"), messages_, body.get("tools") or []
        )
    except ConversionError as exc:
        return await _reject(draft, started, _bad_request(str(exc)))
    except TooLarge:
        return await _reject(draft, started, TOO_LARGE)
    remote = await remote_count.remote_count(body, config)
    if remote is not None:
        tokens = remote
    draft.model_requested = model
    draft.model_sent = resolved.upstream_id
    draft.input_tokens = tokens
    await accounting.write_local(draft, status=200, started=started)
    return JsonResponse({"input_tokens": max(1, tokens)})


def _models_context(presented: str | None) -> tuple[KeyIdentity | None, GatewayConfig, list]:
    key, config = _authenticate(presented)
    candidates = selectors.pool_candidates(group=key.group) if key is not None else []
    return key, config, candidates


async def models(request: HttpRequest) -> HttpResponse:
    """GET /v1/models: the models the caller's credential group can serve, and custom ones."""
    started = time.monotonic()
    key, config, candidates = await db(_models_context, auth.presented_key(request))
    draft = _draft("/v1/models", key)
    if key is None:
        return await _reject(draft, started, INVALID_KEY)
    listed = await resolution.listable(candidates, key, config)
    if listed is None:
        scope = f"group '{key.group}'" if key.group else "the pool"
        error = errors.api_error(
            f"No upstream credential is available in {scope} to list models.",
            status=503,
            kind=ErrorType.NO_CREDENTIALS,
        )
        await record_rejection(draft, started, error)
        return error_response(error)
    data = [
        {
            "id": m.requested,
            "type": "model",
            "display_name": m.display_name,
            "created_at": "2025-01-01T00:00:00Z",
            "owned_by": m.owned_by,
            "max_tokens": m.max_output_tokens,
            "context_window": m.context_window,
        }
        for m in listed
    ]
    await accounting.write_local(draft, status=200, started=started)
    return JsonResponse(
        {
            "data": data,
            "has_more": False,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
            "object": "list",
        }
    )
