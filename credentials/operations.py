"""Operator actions that call Kiro or a proxy: balance, token, models, model test, overage,
proxy health (spec kiro-ops §7, §8.1–§8.3).

Each function is async, takes ids and plain values, does its I/O with no database connection
held, and writes through `credentials.services` via `db()`. The admin (sync) calls them
through `run_sync`, the background jobs (`gateway/jobs.py`) directly.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeVar

import httpx
from django.conf import settings
from django.utils import timezone

from credentials import profiles, selectors, services, tokens
from credentials.asyncdb import db
from credentials.models import Credential, ProxyEntry
from credentials.selectors import GatewayConfig
from gateway.kiro import client as kiro_client
from gateway.kiro.types import BUILDER_ID_PLACEHOLDER_ARN, CredentialAccess
from gateway.protocol.balance import Balance, parse_usage_limits
from gateway.protocol.convert import ConvertOptions, convert_request, encode_body, for_endpoint
from gateway.protocol.events import AssistantResponse, Metering, UpstreamError, parse_message
from gateway.protocol.eventstream import EventStreamDecoder, Message

log = logging.getLogger(__name__)
T = TypeVar("T")

BALANCE_PATH = "/getUsageLimits?origin=AI_EDITOR&resourceType=AGENTIC_REQUEST&isEmailRequired=true"
MODELS_PATH = "/ListAvailableModels?origin=AI_EDITOR"
BALANCE_TTL = timedelta(minutes=5)  # spec kiro-ops §8.1: 300 s
PROXY_TIMEOUT = 8.0  # spec kiro-ops §7
TEST_PROMPT = "Reply with one short sentence to confirm you are working."
VERIFY_CONCURRENCY = 4


class OperationError(Exception):
    """An operation failed; the message is safe to show to an operator."""


@dataclass(frozen=True, slots=True)
class BalanceResult:
    credential_id: int
    balance: Balance
    checked_at: Any
    cached: bool


@dataclass(frozen=True, slots=True)
class ModelInfo:
    model_id: str
    name: str
    description: str
    max_input_tokens: int | None
    max_output_tokens: int | None


@dataclass(frozen=True, slots=True)
class ModelTestResult:
    credential_id: int
    model: str
    ok: bool
    text: str
    latency_ms: int
    credits: float
    status: int  # 200 on success, 502 when the model gave no usable answer
    error: str = ""


@dataclass(frozen=True, slots=True)
class VerifyItem:
    credential_id: int
    ok: bool
    detail: str


@dataclass(frozen=True, slots=True)
class ProxyCheck:
    proxy_id: int
    healthy: bool
    latency_ms: int | None
    detail: str
    disabled: bool = False


@dataclass(slots=True)
class _Context:
    config: GatewayConfig
    access: CredentialAccess
    notes: list[str] = field(default_factory=list)


def run_sync(fn: Callable[..., Awaitable[T]], /, **kwargs: Any) -> T:
    """Run an operation from sync code (admin views) on a private loop; close its clients.

    The upstream client pool is per event loop; a private loop in a worker thread never
    touches the serving loop and leaves no open connection behind.
    """

    async def isolated() -> T:
        try:
            return await fn(**kwargs)
        finally:
            await kiro_client.close_clients()

    with ThreadPoolExecutor(max_workers=1) as executor:
        return executor.submit(asyncio.run, isolated()).result()


async def _context(credential_id: int) -> _Context:
    config = await db(selectors.gateway_config)
    access = await db(selectors.credential_access, credential_id=credential_id, config=config)
    if access is None:
        raise OperationError(f"credential #{credential_id} does not exist")
    return _Context(config=config, access=access)


async def _token(ctx: _Context, *, force: bool = False) -> CredentialAccess:
    try:
        ctx.access = await tokens.ensure_token(ctx.access, ctx.config, force=force)
    except tokens.TokenError as exc:
        raise OperationError(f"token refresh failed: {exc}") from None
    return ctx.access


async def _rest(ctx: _Context, path: str) -> httpx.Response:
    """GET a REST call with a fresh token; on 401/403 force one refresh and retry."""
    await _token(ctx)
    for attempt in range(2):
        try:
            response = await kiro_client.get_rest(
                ctx.access, tokens.bearer(ctx.access), ctx.config, path
            )
        except httpx.HTTPError as exc:
            raise OperationError(f"upstream unreachable: {exc.__class__.__name__}") from None
        if response.status_code in (401, 403) and attempt == 0 and not ctx.access.is_api_key:
            await _token(ctx, force=True)
            continue
        return response
    return response


def _upstream_error(response: httpx.Response) -> OperationError:
    snippet = response.text[:200].strip()
    return OperationError(f"upstream answered {response.status_code}: {snippet}")


# --- token ----------------------------------------------------------------------------------


async def refresh_token(*, credential_id: int) -> str:
    """Refresh a credential's token now, whatever its expiry; return the new expiry."""
    ctx = await _context(credential_id)
    if ctx.access.is_api_key:
        raise OperationError("API-key credentials have no token to refresh")
    access = await _token(ctx, force=True)
    return access.expires_at.isoformat() if access.expires_at else "unknown"


# --- balance (spec kiro-ops §8.1) -------------------------------------------------------------


def _cached_balance(credential_id: int) -> tuple[dict | None, Any]:
    row = Credential.objects.filter(pk=credential_id).values("balance", "balance_checked_at")
    found = row.first()
    if found is None:
        raise OperationError(f"credential #{credential_id} does not exist")
    return found["balance"], found["balance_checked_at"]


async def check_balance(*, credential_id: int, force: bool = False) -> BalanceResult:
    """Return the balance, from the 5-minute cache unless stale or forced (spec §8.1)."""
    if not force:
        cached, checked_at = await db(_cached_balance, credential_id)
        if cached and checked_at and timezone.now() - checked_at < BALANCE_TTL:
            return BalanceResult(credential_id, cached, checked_at, cached=True)  # type: ignore[arg-type]
    ctx = await _context(credential_id)
    response = await _rest(ctx, BALANCE_PATH)
    if response.status_code != 200:
        raise _upstream_error(response)
    try:
        data = json.loads(response.text)
    except ValueError:
        raise OperationError("getUsageLimits answered with invalid JSON") from None
    if not isinstance(data, dict):
        raise OperationError("getUsageLimits answered with an unexpected shape")
    balance = parse_usage_limits(data)
    await db(services.credential_store_balance, credential_id=credential_id, balance=dict(balance))
    return BalanceResult(credential_id, balance, timezone.now(), cached=False)


async def verify(*, credential_ids: Iterable[int]) -> list[VerifyItem]:
    """Check the live balance of each credential and report per credential (spec #122)."""
    gate = asyncio.Semaphore(VERIFY_CONCURRENCY)

    async def one(credential_id: int) -> VerifyItem:
        async with gate:
            try:
                result = await check_balance(credential_id=credential_id, force=True)
            except OperationError as exc:
                return VerifyItem(credential_id, False, str(exc))
            b = result.balance
            return VerifyItem(
                credential_id,
                True,
                f"{b['subscription_title'] or 'unknown plan'}: "
                f"{b['current_usage']:g} / {b['usage_limit']:g} used",
            )

    return list(await asyncio.gather(*(one(pk) for pk in credential_ids)))


# --- overage (spec kiro-ops §8.1) -------------------------------------------------------------


async def set_overage(*, credential_id: int, enabled: bool) -> str:
    """Switch overage on or off with setUserPreference; refuse when not capable."""
    result = await check_balance(credential_id=credential_id)
    if result.balance.get("overage_capable") is not True:
        raise OperationError("this credential's plan does not support overage")
    ctx = await _context(credential_id)
    await _token(ctx)
    status = "ENABLED" if enabled else "DISABLED"
    body: dict[str, Any] = {"overageConfiguration": {"overageStatus": status}}
    arn = ctx.access.profile_arn
    if arn and arn != BUILDER_ID_PLACEHOLDER_ARN:
        body["profileArn"] = arn  # spec §1.6: only a real ARN
    response = await _post_preference(ctx, json.dumps(body).encode())
    if not 200 <= response.status_code < 300:
        raise _upstream_error(response)
    await db(services.credential_set_overage_status, credential_id=credential_id, status=status)
    return status


@dataclass(frozen=True, slots=True)
class OverageOutcome:
    credential_id: int
    outcome: str  # "enabled" | "already_enabled" | "not_capable" | "failed"
    detail: str = ""


async def enable_overage_all(*, credential_ids: Iterable[int]) -> list[OverageOutcome]:
    """Switch overage on where capable and still off; report the rest (spec #134)."""
    gate = asyncio.Semaphore(VERIFY_CONCURRENCY)

    async def one(credential_id: int) -> OverageOutcome:
        async with gate:
            try:
                balance = (await check_balance(credential_id=credential_id)).balance
            except OperationError as exc:
                return OverageOutcome(credential_id, "failed", str(exc))
            if balance.get("overage_enabled") is True:
                return OverageOutcome(credential_id, "already_enabled")
            if balance.get("overage_capable") is not True:
                raw = balance.get("overage_capability_raw") or "unknown"
                return OverageOutcome(credential_id, "not_capable", raw)
            try:
                await set_overage(credential_id=credential_id, enabled=True)
            except OperationError as exc:
                return OverageOutcome(credential_id, "failed", str(exc))
            return OverageOutcome(credential_id, "enabled")

    return list(await asyncio.gather(*(one(pk) for pk in credential_ids)))


async def _post_preference(ctx: _Context, body: bytes) -> httpx.Response:
    """POST setUserPreference through the upstream module (spec §1.6)."""
    try:
        return await kiro_client.post_rest(
            ctx.access, tokens.bearer(ctx.access), ctx.config, "/setUserPreference", body
        )
    except httpx.HTTPError as exc:
        raise OperationError(f"upstream unreachable: {exc.__class__.__name__}") from None


# --- models (spec kiro-ops §8.2, §8.3) --------------------------------------------------------


def _model_infos(data: Any) -> list[ModelInfo]:
    models = data.get("models") if isinstance(data, dict) else None
    found = []
    for entry in models if isinstance(models, list) else []:
        if not isinstance(entry, dict) or not isinstance(entry.get("modelId"), str):
            continue
        limits = entry.get("tokenLimits") if isinstance(entry.get("tokenLimits"), dict) else {}
        found.append(
            ModelInfo(
                model_id=entry["modelId"],
                name=str(entry.get("modelName") or entry["modelId"]),
                description=str(entry.get("description") or ""),
                max_input_tokens=limits.get("maxInputTokens"),
                max_output_tokens=limits.get("maxOutputTokens"),
            )
        )
    return found


async def list_models(*, credential_id: int) -> list[ModelInfo]:
    """Ask ListAvailableModels live for one credential and refresh its cached id list."""
    ctx = await _context(credential_id)
    response = await _rest(ctx, MODELS_PATH)
    if response.status_code != 200:
        raise _upstream_error(response)
    try:
        infos = _model_infos(json.loads(response.text))
    except ValueError:
        raise OperationError("ListAvailableModels answered with invalid JSON") from None
    ids = sorted({m.model_id.lower() for m in infos})
    await db(services.credential_set_models, credential_id=credential_id, models=ids)
    return infos


async def test_model(*, credential_id: int, model: str) -> ModelTestResult:
    """Send one minimal real prompt as this credential; report text, latency and credits."""
    ctx = await _context(credential_id)
    started = time.monotonic()

    def result(ok: bool, text: str = "", credits: float = 0.0, error: str = "") -> ModelTestResult:
        return ModelTestResult(
            credential_id=credential_id,
            model=model,
            ok=ok,
            text=text,
            latency_ms=int((time.monotonic() - started) * 1000),
            credits=round(credits, 6),
            status=200 if ok else 502,
            error=error,
        )

    try:
        conversion = convert_request(
            {
                "model": model,
                "max_tokens": 64,
                "messages": [{"role": "user", "content": TEST_PROMPT}],
            },
            options=ConvertOptions(endpoint="ide", conversation_id=str(uuid.uuid4())),
        )
    except Exception as exc:  # ConversionError and friends: a bad model id
        return result(False, error=f"invalid model: {exc}")
    try:
        access = await _token(ctx)
        access = await profiles.resolve(access, ctx.config)
    except (OperationError, tokens.TokenError) as exc:
        return result(False, error=str(exc))
    body = encode_body(
        for_endpoint(
            conversion.kiro_body,
            endpoint=access.endpoint,  # type: ignore[arg-type]
            profile_arn=access.streaming_profile_arn,
        )
    )
    texts: list[str] = []
    credits = 0.0
    failure = ""

    def take(items: list[Any]) -> None:
        nonlocal credits, failure
        for item in items:
            event = parse_message(item) if isinstance(item, Message) else None
            if isinstance(event, AssistantResponse):
                texts.append(event.content)
            elif isinstance(event, Metering):
                credits += event.usage
            elif isinstance(event, UpstreamError) and not failure:
                failure = f"{event.code}: {event.message}"

    try:
        async with kiro_client.open_stream(access, tokens.bearer(access), body, ctx.config) as resp:
            if not 200 <= resp.status_code < 300:
                raw = (await resp.aread()).decode("utf-8", errors="replace")
                return result(False, error=f"upstream answered {resp.status_code}: {raw[:300]}")
            decoder = EventStreamDecoder()
            async for chunk in resp.aiter_raw():
                take(decoder.feed(chunk))
            take(decoder.close())
    except httpx.HTTPError as exc:
        return result(False, "".join(texts), credits, f"upstream unreachable: {exc}")
    if failure:
        return result(False, "".join(texts), credits, failure)
    text = "".join(texts)
    if not text.strip():
        return result(False, text, credits, "empty reply")  # spec §8.3: 502
    return result(True, text, credits)


# --- proxy pool health (spec kiro-ops §7) -----------------------------------------------------


def probe_url() -> str:
    """Return the URL fetched through a proxy to test it (setting, read at call time)."""
    return settings.KIRO_PROXY_PROBE_URL


async def probe(url: str) -> tuple[bool, int | None, str]:
    """GET the probe URL through one proxy; 2xx/3xx is healthy. Return (ok, ms, detail)."""
    return await kiro_client.probe_proxy(url, probe_url(), seconds=PROXY_TIMEOUT)


def _proxy_urls(proxy_ids: list[int] | None) -> list[tuple[int, str]]:
    queryset = ProxyEntry.objects.order_by("pk")
    if proxy_ids is None:
        queryset = queryset.filter(enabled=True)  # background and check-all: enabled only
    else:
        queryset = queryset.filter(pk__in=proxy_ids)
    return list(queryset.values_list("pk", "url"))


async def check_proxies(*, proxy_ids: list[int] | None = None) -> list[ProxyCheck]:
    """Probe pool entries in parallel (the given ones, else every enabled one) and record."""
    entries = await db(_proxy_urls, proxy_ids)

    async def one(proxy_id: int, url: str) -> ProxyCheck:
        healthy, latency, detail = await probe(url)
        disabled = await db(
            services.proxy_record_check, proxy_id=proxy_id, healthy=healthy, latency_ms=latency
        )
        return ProxyCheck(proxy_id, healthy, latency, detail, disabled)

    return list(await asyncio.gather(*(one(pk, url) for pk, url in entries)))
