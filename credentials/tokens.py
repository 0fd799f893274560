"""Fresh access tokens, refreshed exactly once across coroutines and processes (spec §8).

Within a process an asyncio lock per credential makes coroutines wait for one refresh. Across
processes a conditional UPDATE claims the row (credentials.services.credential_refresh_claim):
only the claimer calls the refresh endpoint; the others poll until `token_version` moves.
No database connection is held while the refresh call is in flight.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import uuid
import weakref
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

import httpx
from django.utils import timezone

from credentials import kiro_files, metrics, selectors, services, tracing
from credentials.asyncdb import db
from credentials.selectors import GatewayConfig
from gateway.kiro import auth as kiro_auth
from gateway.kiro.types import CredentialAccess
from gateway.protocol.classify import parse_retry_after

log = logging.getLogger(__name__)

EXPIRY_SKEW = timedelta(minutes=10)  # spec §8.7: refresh when expiring within 10 minutes
STILL_EXPIRED = timedelta(minutes=5)  # spec §8.6: a refreshed token this close counts as failed
CLAIM_TTL_SECONDS = 60
POLL_INTERVAL = 0.1
_OWNER = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[int, asyncio.Lock]] = (
    weakref.WeakKeyDictionary()
)


class TokenError(Exception):
    """No usable token for this credential now; the dispatcher moves on."""

    def __init__(
        self,
        message: str,
        *,
        disabled: bool = False,
        rate_limited: bool = False,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.disabled = disabled
        self.rate_limited = rate_limited
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class RefreshAnswer:
    access_token: str
    refresh_token: str | None
    expires_at: datetime | None
    profile_arn: str | None


def needs_refresh(access: CredentialAccess, now: datetime) -> bool:
    if access.is_api_key:
        return False
    return (
        not access.access_token
        or access.expires_at is None
        or (access.expires_at <= now + EXPIRY_SKEW)
    )


def bearer(access: CredentialAccess) -> str:
    return access.kiro_api_key if access.is_api_key else access.access_token


async def ensure_token(
    access: CredentialAccess, config: GatewayConfig, *, force: bool = False
) -> CredentialAccess:
    """Return the credential with a usable bearer token, refreshing it once if needed."""
    if access.is_api_key:
        if force:
            raise TokenError("API-key credentials cannot be refreshed")
        return access
    if not force and not needs_refresh(access, timezone.now()):
        return access
    locks = _locks.setdefault(asyncio.get_running_loop(), {})
    async with locks.setdefault(access.id, asyncio.Lock()):
        current = await _reload(access.id, config)
        fresh = not needs_refresh(current, timezone.now())
        if current.token_version != access.token_version and (force or fresh):
            return current  # another coroutine or process refreshed it meanwhile
        if not force and fresh:
            return current
        return await _refresh_once(current, config, force=force)


async def _reload(credential_id: int, config: GatewayConfig) -> CredentialAccess:
    access = await db(selectors.credential_access, credential_id=credential_id, config=config)
    if access is None:
        raise TokenError("credential was deleted")
    return access


async def _refresh_once(
    access: CredentialAccess, config: GatewayConfig, *, force: bool
) -> CredentialAccess:
    deadline = asyncio.get_running_loop().time() + CLAIM_TTL_SECONDS + 5
    seen = access
    while True:
        claimed = await db(
            services.credential_refresh_claim,
            credential_id=seen.id,
            seen_version=seen.token_version,
            owner=_OWNER,
            ttl_seconds=CLAIM_TTL_SECONDS,
        )
        if claimed:
            return await _do_refresh(seen, config, force=force)
        # Someone else holds the claim (or already moved the version): wait for its result.
        await asyncio.sleep(POLL_INTERVAL)
        latest = await _reload(seen.id, config)
        if latest.token_version != seen.token_version:
            if not needs_refresh(latest, timezone.now()) or force:
                return latest
            seen = latest
        if asyncio.get_running_loop().time() > deadline:
            raise TokenError("timed out waiting for another process to refresh the token")


async def _do_refresh(
    access: CredentialAccess, config: GatewayConfig, *, force: bool
) -> CredentialAccess:
    problem = _local_problem(access)
    if problem:
        metrics.observe_refresh("failure")
        await _failed(access, invalid_grant=False)
        raise TokenError(problem)
    try:
        with tracing.child(
            "kiro.token_refresh", {"credential.id": access.id, "auth_method": access.auth_method}
        ) as span:
            response = await kiro_auth.refresh_request(access, config)
            tracing.set_attributes(span, {"http.status_code": response.status_code})
    except httpx.HTTPError as exc:
        metrics.observe_refresh("failure")
        await _failed(access, invalid_grant=False)
        raise TokenError(f"refresh request failed: {exc.__class__.__name__}") from None
    body = response.text
    if response.status_code == 429:
        metrics.observe_refresh("rate_limited")
        await _release(access)  # spec §8.6 (Z): rate limited, not a failure
        raise TokenError(
            "refresh rate limited",
            rate_limited=True,
            retry_after=parse_retry_after(response.headers.get("retry-after")),
        )
    if response.status_code == 400 and "invalid_grant" in body:
        metrics.observe_refresh("invalid_grant")
        return await _invalid_grant(access, config)
    answer = _parse_answer(access, response.status_code, body)
    now = timezone.now()
    if answer is None or (
        not force and (answer.expires_at is None or answer.expires_at <= now + STILL_EXPIRED)
    ):
        metrics.observe_refresh("failure")
        disabled = await _failed(access, invalid_grant=False)
        raise TokenError(f"refresh failed with status {response.status_code}", disabled=disabled)
    await db(
        services.credential_refresh_commit,
        credential_id=access.id,
        owner=_OWNER,
        access_token=answer.access_token,
        expires_at=answer.expires_at,
        refresh_token=answer.refresh_token,
        profile_arn=None if access.auth_method == "external_idp" else answer.profile_arn,
    )
    metrics.observe_refresh("success")
    log.info("refreshed token of credential %s", access.id)
    return replace(
        access,
        access_token=answer.access_token,
        expires_at=answer.expires_at,
        refresh_token=answer.refresh_token or access.refresh_token,
        profile_arn=answer.profile_arn or access.profile_arn,
        token_version=access.token_version + 1,
    )


async def _invalid_grant(access: CredentialAccess, config: GatewayConfig) -> CredentialAccess:
    """Re-read the row first: another process may have rotated the token (spec §8.6)."""
    latest = await _reload(access.id, config)
    if latest.refresh_token != access.refresh_token or latest.token_version != access.token_version:
        await _release(access)
        if not needs_refresh(latest, timezone.now()):
            return latest
        raise TokenError("refresh token was rotated elsewhere; retry")
    await _failed(access, invalid_grant=True)
    raise TokenError("refresh token is invalid (invalid_grant)", disabled=True)


def _local_problem(access: CredentialAccess) -> str | None:
    if access.auth_method != "external_idp":
        return kiro_files.refresh_token_problem(access.refresh_token or "")
    if not access.refresh_token:
        return "no refresh token"
    problem = kiro_files.validate_token_endpoint(access.token_endpoint)
    return f"token endpoint {problem}" if problem else None


def _parse_answer(access: CredentialAccess, status: int, body: str) -> RefreshAnswer | None:
    if not 200 <= status < 300:
        return None
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    snake = access.auth_method == "external_idp"
    token = data.get("access_token" if snake else "accessToken")
    if not isinstance(token, str) or not token:
        return None
    expires_in = data.get("expires_in" if snake else "expiresIn")
    expires_at = None
    if isinstance(expires_in, int | float) and not isinstance(expires_in, bool):
        expires_at = timezone.now() + timedelta(seconds=float(expires_in))
    rotated = data.get("refresh_token" if snake else "refreshToken")
    arn = data.get("profileArn")
    return RefreshAnswer(
        access_token=token,
        refresh_token=rotated if isinstance(rotated, str) and rotated else None,
        expires_at=expires_at,
        profile_arn=arn if isinstance(arn, str) and arn else None,
    )


async def _failed(access: CredentialAccess, *, invalid_grant: bool) -> bool:
    return await db(
        services.credential_refresh_failed,
        credential_id=access.id,
        owner=_OWNER,
        invalid_grant=invalid_grant,
    )


async def _release(access: CredentialAccess) -> None:
    await db(services.credential_refresh_release, credential_id=access.id, owner=_OWNER)
