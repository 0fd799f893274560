"""One client request -> attempts over the credential pool -> translated events.

`connect()` runs the retry loop of spec kiro-protocol §7 (classification, backoff, failover,
forced refresh, self-heal) until an upstream stream is open; database work happens here,
between attempts. `relay()` then streams: bytes in, SSE out (Anthropic's, or whatever the
endpoint's renderer writes), no database access until the usage record is written in
`finally`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
from django.utils import timezone

from credentials import model_cache, profiles, selectors, services, tokens, tracing
from credentials.asyncdb import db
from credentials.pool import Candidate, choose, is_in_scope, self_heal_targets
from credentials.selectors import GatewayConfig, KeyIdentity
from gateway.api import accounting
from gateway.kiro import client as kiro_client
from gateway.kiro.proxies import UnusableProxy
from gateway.kiro.types import CredentialAccess
from gateway.protocol import classify, errors
from gateway.protocol.anthropic_stream import StreamTranslator
from gateway.protocol.assemble import assemble_result
from gateway.protocol.classify import Action, Outcome
from gateway.protocol.convert import encode_body, for_endpoint
from gateway.protocol.errors import AnthropicType, ClientError, ErrorType
from gateway.protocol.events import KiroEvent, parse_message
from gateway.protocol.eventstream import EventStreamDecoder, Message, SkippedRegion
from gateway.protocol.translate import Renderer, TranslateOptions, TranslationResult
from usage.models import UsageStatus
from usage.services import AttemptDraft, UsageDraft

log = logging.getLogger(__name__)


class DispatchError(Exception):
    """The request cannot be served; `error` is what the client receives."""

    def __init__(self, error: ClientError, *, error_type: str = "") -> None:
        super().__init__(error.message)
        self.error = error
        self.error_type = ErrorType(error_type or error.kind)  # the record's type


@dataclass(slots=True)
class Prefetched:
    """Pool state read in the request's first trip to the database (views._begin)."""

    candidates: list[Candidate]
    model: str | None  # the upstream model id `access` was chosen for
    access: CredentialAccess | None  # the first choice, or None
    #: The ids the key's credentials list (model_cache.catalogue); None: not known yet.
    catalogue: frozenset[str] | None = None


def prefetch_pool(
    key: KeyIdentity,
    config: GatewayConfig,
    model: str | None,
    start: selectors.StartRead,
    *,
    catalogue: frozenset[str] | None = None,
) -> Prefetched:
    """Choose the credential of the first attempt from what `selectors.request_start` read
    (pure: no query; only the chosen credential's secrets are decrypted).

    `connect` makes the same choice again; if it differs (the pool moved meanwhile), it
    reads that credential in a trip of its own."""
    access = None
    if model is not None:
        first = choose(
            start.candidates,
            mode=config.load_balancing_mode,
            current_id=config.current_credential_id,
            model=model,
            group=key.group,
            now=timezone.now(),
            exclude=set(),
        )
        if first is not None:
            access = start.access(first.id, config)
    return Prefetched(start.candidates, model, access, catalogue)


@dataclass(slots=True)
class Request:
    """One upstream call on behalf of a client request (a chat turn or an MCP search)."""

    key: KeyIdentity
    config: GatewayConfig
    draft: UsageDraft
    model: str | None  # upstream model id; None for MCP calls (no model rules, spec §3.1)
    kiro_body: dict[str, Any] | None = None  # converted for the ide endpoint, no profileArn
    translate: TranslateOptions | None = None
    mcp_body: bytes | None = None
    started: float = field(default_factory=time.monotonic)
    prefetched: Prefetched | None = None
    _encoded: dict[tuple[str, str | None], bytes] = field(default_factory=dict)

    def body_for(self, access: CredentialAccess) -> bytes:
        """Return the chat body for this credential's endpoint and profileArn (cached)."""
        arn = None if access.endpoint == "cli" else access.streaming_profile_arn
        key = (access.endpoint, arn)
        if key not in self._encoded:
            assert self.kiro_body is not None
            self._encoded[key] = encode_body(
                for_endpoint(self.kiro_body, endpoint=access.endpoint, profile_arn=arn)
            )
        return self._encoded[key]


@dataclass(slots=True)
class Connected:
    access: CredentialAccess
    response: httpx.Response
    stack: contextlib.AsyncExitStack


def _no_credential_error(candidates: list[Candidate], request: Request) -> ClientError:
    """Explain why nothing can serve: cooling down (429), or none usable (503)."""
    now = timezone.now()
    model = request.model
    in_scope = [c for c in candidates if is_in_scope(c, model=model, group=request.key.group)]
    cooling = [
        c.cooldown_until
        for c in in_scope
        if c.enabled and c.cooldown_until and c.cooldown_until > now
    ]
    if cooling:
        wait = max(1, int((min(cooling) - now).total_seconds() + 0.999))
        return errors.rate_limited(classify.RATE_LIMITED_MESSAGE, wait, ErrorType.ACCOUNT_THROTTLED)
    scope = f"group '{request.key.group}'" if request.key.group else "the pool"
    what = f"model '{model}'" if model else "web search"
    return errors.api_error(
        f"No upstream credential is available for {what} in {scope} "
        f"({len(in_scope)} configured, none usable).",
        status=503,
        kind=ErrorType.NO_CREDENTIALS,
    )


async def connect(request: Request) -> Connected:
    """Open an upstream stream for the request, failing over within the retry budget."""
    config, key = request.config, request.key
    request.draft.trace = config.trace_enabled  # off: the record without its attempt rows
    model = request.model
    if request.prefetched is not None:
        candidates = request.prefetched.candidates
    else:
        candidates = await db(selectors.pool_candidates, group=key.group)
    in_scope = [c for c in candidates if is_in_scope(c, model=model, group=key.group)]
    budget = min(
        config.max_attempts_per_request, max(1, len(in_scope)) * config.max_attempts_per_credential
    )
    per_credential: Counter[int] = Counter()
    excluded: set[int] = set()
    forced: set[int] = set()
    current_id = config.current_credential_id
    healed = False
    last_error: ClientError | None = None
    rpm_waits: list[int] = []  # seconds until each RPM-limited credential frees a slot
    attempt = 0
    while attempt < budget:
        candidate = choose(
            candidates,
            mode=config.load_balancing_mode,
            current_id=current_id,
            model=model,
            group=key.group,
            now=timezone.now(),
            exclude=excluded,
        )
        if candidate is None:
            if not healed and config.self_heal_enabled:
                healed = True
                # Never heal what failed in this very request: self-heal is for credentials
                # disabled earlier (spec kiro-ops §3.9).
                targets = [
                    cid
                    for cid in self_heal_targets(
                        candidates,
                        model=model,
                        group=key.group,
                        now=timezone.now(),
                        min_interval_secs=config.self_heal_min_interval_secs,
                        max_rounds=config.self_heal_max_consecutive_rounds,
                    )
                    if cid not in excluded
                ]
                if targets and await db(
                    services.credential_self_heal, credential_ids=targets, model=model
                ):
                    log.warning("self-healed credentials %s for %s", targets, model)
                    candidates = await db(selectors.pool_candidates, group=key.group)
                    continue
            break
        if config.account_rpm_limit:
            wait = await db(
                services.credential_rpm_reserve,
                credential_id=candidate.id,
                limit=config.account_rpm_limit,
            )
            if wait:  # kiro-ops §3.8: skipped, neither failed nor disabled
                excluded.add(candidate.id)
                rpm_waits.append(wait)
                continue
        if config.load_balancing_mode == "priority" and candidate.id != current_id:
            await db(services.pool_set_current, credential_id=candidate.id)
            current_id = candidate.id
        attempt += 1
        per_credential[candidate.id] += 1
        if per_credential[candidate.id] >= config.max_attempts_per_credential:
            excluded.add(candidate.id)
        outcome = await _attempt(request, candidate, forced)
        if isinstance(outcome, Connected):
            return outcome
        verdict, retry_credential = outcome
        last_error = verdict.error or last_error
        if verdict.action == Action.FAIL:
            raise DispatchError(
                verdict.error or classify.UPSTREAM_FAILED, error_type=verdict.outcome.value
            )
        if verdict.action == Action.SWITCH or retry_credential is False:
            excluded.add(candidate.id)
            candidates = await db(selectors.pool_candidates, group=key.group)
        if verdict.action == Action.RETRY and attempt < budget:
            await asyncio.sleep(
                classify.backoff_seconds(attempt - 1, throttle=verdict.throttle_backoff)
            )
    if last_error is None and rpm_waits:
        raise DispatchError(
            errors.rate_limited(
                "Every usable credential is at its per-account requests-per-minute limit; "
                f"retry in {min(rpm_waits)} s.",
                min(rpm_waits),
                ErrorType.ACCOUNT_RPM_LIMIT,
            )
        )
    if last_error is None:
        raise DispatchError(
            _no_credential_error(candidates, request), error_type=ErrorType.NO_CREDENTIALS
        )
    if attempt < budget:
        # Stopped early: nothing eligible is left. Cooldowns answer 429 with their wait.
        error = _no_credential_error(candidates, request)
        if error.status == 429:
            raise DispatchError(error)
    raise DispatchError(last_error, error_type=ErrorType.UPSTREAM_EXHAUSTED)


def _take_prefetched(request: Request, credential_id: int) -> CredentialAccess | None:
    """Use the credential read with the pool, once: a later attempt reads it afresh."""
    prefetched = request.prefetched
    if prefetched is None or prefetched.access is None or prefetched.model != request.model:
        return None
    access, prefetched.access = prefetched.access, None
    return access if access.id == credential_id else None


async def _attempt(
    request: Request, candidate: Candidate, forced: set[int]
) -> Connected | tuple[classify.Verdict, bool | None]:
    """Try one credential once, in a span of its own when tracing (credentials.tracing)."""
    if request.draft.span is None:
        return await _try(request, candidate, forced, None)
    number = len(request.draft.attempts)
    span = tracing.start_child(
        "kiro.attempt", {"credential.id": candidate.id, "attempt": number}, request.draft.span
    )
    try:
        outcome = await _try(request, candidate, forced, span)
    finally:
        tried = request.draft.attempts[number:]
        if tried:
            tracing.set_attributes(span, {"http.status_code": tried[0].http_status})
            tracing.set_attributes(span, {"outcome": str(tried[0].outcome)})
        tracing.finish(span, {})
    return outcome


async def _try(
    request: Request, candidate: Candidate, forced: set[int], span: Any
) -> Connected | tuple[classify.Verdict, bool | None]:
    """Try one credential once. Return the open stream, or the verdict and whether to
    keep the credential eligible (False: exclude it)."""
    config = request.config
    started = time.monotonic()
    access = _take_prefetched(request, candidate.id)
    if access is None:
        access = await db(selectors.credential_access, credential_id=candidate.id, config=config)
    if access is None:
        return classify.Verdict(Outcome.UNKNOWN, Action.SWITCH), False
    tracing.set_attributes(span, {"region": access.api_region, "endpoint": access.endpoint})
    record = AttemptDraft(
        credential_id=access.id,
        endpoint=access.endpoint,
        http_status=None,
        outcome=Outcome.AUTH_FAILED,
    )
    request.draft.attempts.append(record)
    try:
        access = await tokens.ensure_token(access, config)
        access = await profiles.resolve(access, config)
    except tokens.TokenError as exc:
        record.error_snippet, record.duration_ms = str(exc), accounting.ms_since(started)
        if exc.rate_limited:
            error = errors.rate_limited(classify.RATE_LIMITED_MESSAGE, exc.retry_after)
            return classify.Verdict(Outcome.TRANSIENT, Action.FAIL, error=error), None
        return classify.Verdict(
            Outcome.AUTH_FAILED, Action.SWITCH, error=classify.UPSTREAM_FAILED
        ), False
    stack = contextlib.AsyncExitStack()
    try:
        if request.mcp_body is not None:
            response = await kiro_client.call_mcp(
                access, tokens.bearer(access), request.mcp_body, config
            )
        else:
            response = await stack.enter_async_context(
                kiro_client.open_stream(
                    access, tokens.bearer(access), request.body_for(access), config
                )
            )
    except httpx.HTTPError as exc:
        await stack.aclose()
        record.outcome, record.duration_ms = Outcome.NETWORK_ERROR, accounting.ms_since(started)
        record.error_snippet = f"{exc.__class__.__name__}: {exc}"
        if isinstance(exc, UnusableProxy):  # this credential's proxy: try another at once
            return classify.unusable_proxy_verdict(), False
        return classify.network_error_verdict(), None
    record.http_status = response.status_code
    if 200 <= response.status_code < 300:
        record.outcome, record.duration_ms = Outcome.SUCCESS, accounting.ms_since(started)
        request.draft.credential_id = access.id
        if model_cache.is_stale(access.models_checked_at, config.model_cache_ttl_secs):
            model_cache.refresh_soon(access, config)
        return Connected(access, response, stack)
    try:
        body = (await response.aread()).decode("utf-8", errors="replace")
    except httpx.HTTPError:
        body = ""
    finally:
        await stack.aclose()
    record.error_snippet, record.duration_ms = body, accounting.ms_since(started)
    verdict = classify.classify(
        response.status_code,
        body,
        retry_after=response.headers.get("retry-after"),
        already_forced_refresh=access.id in forced,
        suspended_detection=config.suspended_detection_enabled,
        throttle_failover=config.account_throttle_failover,
        cooldown_secs=config.account_throttle_cooldown_secs,
    )
    record.outcome = verdict.outcome
    return await _apply(verdict, access, forced, request)


async def _apply(
    verdict: classify.Verdict, access: CredentialAccess, forced: set[int], request: Request
) -> tuple[classify.Verdict, bool | None]:
    """Carry out the credential-state side of a verdict (spec kiro-ops §3.5)."""
    if verdict.disable_reason:
        await db(
            services.credential_disable_auto, credential_id=access.id, reason=verdict.disable_reason
        )
        return verdict, False
    if verdict.cooldown:
        await db(
            services.credential_cooldown,
            credential_id=access.id,
            seconds=request.config.account_throttle_cooldown_secs,
        )
        return verdict, False
    if verdict.action == Action.FORCE_REFRESH:
        forced.add(access.id)
        try:
            await tokens.ensure_token(access, request.config, force=True)
        except tokens.TokenError:
            await db(services.credential_count_failure, credential_id=access.id)
            return classify.Verdict(Outcome.AUTH_FAILED, Action.SWITCH, error=verdict.error), False
        # spec §7.2 row 7: on a successful forced refresh, retry immediately (no backoff).
        return classify.Verdict(Outcome.AUTH_FAILED, Action.RETRY_NOW, error=verdict.error), True
    if verdict.count_failure:
        await db(services.credential_count_failure, credential_id=access.id)
        return verdict, False
    return verdict, None


# --- streaming -------------------------------------------------------------------------------

_PING = object()
_DONE = object()


class _Failure:
    __slots__ = ("error_type", "kind", "message")

    def __init__(self, kind: str, message: str, error_type: ErrorType) -> None:
        self.kind, self.message, self.error_type = kind, message, error_type


async def relay(
    request: Request, connected: Connected, renderer: Renderer | None = None
) -> AsyncIterator[bytes]:
    """Stream translated SSE for an open upstream response; record usage at the end.

    `renderer` writes the endpoint's stream (the OpenAI endpoints'); Anthropic SSE without.
    """
    translator = StreamTranslator(request.translate) if renderer is None else renderer
    queue: asyncio.Queue[Any] = asyncio.Queue()
    loop = asyncio.get_running_loop()
    interval = request.config.stream_ping_interval_secs
    timer: asyncio.TimerHandle | None = None
    status = UsageStatus.INTERRUPTED

    def ping() -> None:
        nonlocal timer
        queue.put_nowait(_PING)
        timer = loop.call_later(interval, ping)

    producer = asyncio.create_task(_produce(connected, translator, queue, request))
    timer = loop.call_later(interval, ping)
    try:
        # spec 6.11: /cc/v1 buffers until the input usage is exact and starts with a ping.
        head = translator.start()
        if request.translate.cc_mode:
            head = translator.ping() + head
        if head:
            yield head
        while True:
            item = await queue.get()
            if item is _DONE:
                break
            if item is _PING:
                yield translator.ping()
                continue
            if isinstance(item, _Failure):
                yield translator.fail(item.kind, item.message, item.error_type)
                break
            if request.draft.first_token_ms is None:
                request.draft.first_token_ms = accounting.ms_since(request.started)
            yield item
        tail = translator.finish() if not translator.failed else b""
        if tail:
            yield tail
        status = UsageStatus.ERROR if translator.failed else UsageStatus.SUCCESS
    finally:
        if timer is not None:
            timer.cancel()
        producer.cancel()
        with contextlib.suppress(BaseException):
            await producer
        _finish_draft(request, translator.summary(), status)
        await accounting.write_usage(request.draft)


def events_of(items: list[Message | SkippedRegion]) -> list[KiroEvent]:
    """Turn decoded frames into events; log the byte regions the decoder had to skip."""
    events = []
    for item in items:
        if isinstance(item, Message):
            event = parse_message(item)
            if event is not None:
                events.append(event)
        else:
            log.warning("skipped %s corrupt upstream bytes (%s)", item.length, item.reason)
    return events


async def _produce(
    connected: Connected, translator: Renderer, queue: asyncio.Queue, request: Request
) -> None:
    """Read the upstream body; translate what each read delivered into one chunk."""
    decoder = EventStreamDecoder()
    try:
        async with connected.stack:
            async for raw in connected.response.aiter_raw():
                out = translator.feed(events_of(decoder.feed(raw)))
                if out:
                    queue.put_nowait(out)
                if translator.failed:
                    break
        if not translator.failed:
            # Frames held behind a truncated one are released at the end (eventstream.close).
            out = translator.feed(events_of(decoder.close()))
            if out:
                queue.put_nowait(out)
        queue.put_nowait(_DONE)
    except httpx.HTTPError as exc:
        request.draft.error_message = f"{exc.__class__.__name__}: {exc}"
        queue.put_nowait(
            _Failure(
                AnthropicType.API,
                f"The upstream stream broke off: {exc.__class__.__name__}.",
                ErrorType.STREAM_INTERRUPTED,
            )
        )
    except Exception as exc:  # a bug must end the stream visibly, never hang it
        log.exception("translating the upstream stream failed")
        request.draft.error_message = f"internal error: {exc.__class__.__name__}"
        queue.put_nowait(
            _Failure(
                AnthropicType.API,
                "The gateway failed while translating the answer.",
                ErrorType.INTERNAL_ERROR,
            )
        )


def _finish_draft(request: Request, result: TranslationResult, status: str) -> None:
    draft = request.draft
    draft.status = status
    draft.input_tokens = result.input_tokens
    draft.output_tokens = result.output_tokens
    draft.cache_creation_tokens = result.cache_creation_input_tokens
    draft.cache_read_tokens = result.cache_read_input_tokens
    draft.credits = result.credits
    draft.latency_ms = accounting.ms_since(request.started)
    if status == UsageStatus.INTERRUPTED and not draft.error_type:
        draft.error_type = ErrorType.CLIENT_DISCONNECTED
    elif result.had_error:
        draft.status = UsageStatus.ERROR
        draft.error_type = result.error_type or ErrorType.STREAM_INTERRUPTED
        draft.error_message = result.error_message or draft.error_message


async def read_all(connected: Connected) -> tuple[list[KiroEvent], httpx.HTTPError | None]:
    """Read a whole upstream answer into events; the error if the body broke off."""
    decoder = EventStreamDecoder()
    events: list[KiroEvent] = []
    try:
        async with connected.stack:
            async for raw in connected.response.aiter_raw():
                events += events_of(decoder.feed(raw))
    except httpx.HTTPError as exc:
        return events, exc
    return events + events_of(decoder.close()), None


async def collect(request: Request, connected: Connected) -> tuple[int, dict[str, Any]]:
    """Read the whole upstream answer and assemble one Anthropic message (non-stream)."""
    status = UsageStatus.INTERRUPTED
    result: TranslationResult | None = None
    try:
        events, exc = await read_all(connected)
        if exc is not None:
            request.draft.error_message = f"{exc.__class__.__name__}: {exc}"
            status = UsageStatus.ERROR
            error = errors.api_error(
                "The upstream stream broke off before the answer was complete.",
                kind=ErrorType.STREAM_INTERRUPTED,
            )
            request.draft.error_type = error.kind
            return error.status, error.body()
        message, result, failure = assemble_result(events, request.translate)
        if failure is not None or message is None:
            status = UsageStatus.ERROR
            request.draft.error_type = failure.kind if failure else ErrorType.EMPTY_ANSWER
            body = failure.body() if failure else classify.UPSTREAM_FAILED.body()
            return (failure.status if failure else 502), body
        status = UsageStatus.SUCCESS
        request.draft.first_token_ms = accounting.ms_since(request.started)
        return 200, message
    finally:
        if result is not None:
            _finish_draft(request, result, status)
        else:
            request.draft.status = status
            request.draft.latency_ms = accounting.ms_since(request.started)
        await accounting.write_usage(request.draft)
