"""Admin login flows that mint tokens for a credential (spec kiro-ops §8.4).

* IdC / Builder ID / Enterprise: the AWS SSO-OIDC device-code flow. `idc_start` registers a
  public client and opens a device authorization; every `idc_poll` makes one `/token` call.
* Social (Google / GitHub): the Kiro portal PKCE flow in paste mode only. `social_start`
  returns the sign-in URL; the operator pastes the final redirect URL into `social_complete`.
  No callback listener is bound: the admin rarely runs on the gateway host (spec §8.4 note).

Sessions hold secrets (client secret, device code, PKCE verifier): they live in Django's
cache, encrypted like the credential columns, with the flow's lifetime as TTL, and are bound
to the staff user who started them. Nothing secret is logged or returned to a page.

The HTTP calls are `gateway.kiro.client`'s login functions (its pooled clients, proxy and TLS
trust settings); they run from the sync admin through `operations.run_sync`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
from django.conf import settings
from django.core.cache import cache
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from credentials import crypto, operations, selectors, services
from credentials.asyncdb import db
from gateway.kiro import auth as kiro_auth
from gateway.kiro import client as kiro_client

log = logging.getLogger(__name__)

BUILDER_ID_START_URL = "https://view.awsapps.com/start"
DEFAULT_REGION = "us-east-1"
MIN_POLL_INTERVAL = 5  # spec §8.4: the UI polls every max(interval, 5) s
SOCIAL_TTL = 600  # spec §8.4: social sessions live 10 minutes
SOCIAL_PORTAL_URL = "https://app.kiro.dev"
SOCIAL_REDIRECT_BASE = "http://127.0.0.1:3128"  # the first port kiro-rs would listen on
SOCIAL_AUTH_REGION = "us-east-1"  # spec §8.4: default authEndpoint prod.us-east-1
_CACHE_PREFIX = "kiro-login:"
_LOCK_SECONDS = 60


class LoginError(Exception):
    """A login step failed; the message is safe to show to an operator."""


@dataclass(frozen=True, slots=True)
class LoginPage:
    """What the admin may show of a session: never the secrets."""

    sid: str
    kind: str  # "idc" | "social"
    credential_id: int | None  # set for a re-login
    expires_at: float
    user_code: str = ""
    verification_uri: str = ""
    verification_uri_complete: str = ""
    interval: int = MIN_POLL_INTERVAL
    provider: str = ""
    signin_url: str = ""
    redirect_uri: str = ""


@dataclass(frozen=True, slots=True)
class LoginResult:
    status: str  # "pending" | "done" | "expired" | "error"
    message: str = ""
    credential_id: int | None = None
    created: bool = False
    warning: str = ""


# --- sessions ----------------------------------------------------------------------------------


def _key(sid: str) -> str:
    return _CACHE_PREFIX + sid


def _save(sid: str, session: dict[str, Any]) -> None:
    ttl = max(1, int(session["expires_at"] - time.time()))
    cache.set(_key(sid), crypto.encrypt(json.dumps(session)), timeout=ttl)


def _load(sid: str, user_id: int) -> dict[str, Any] | None:
    """Return the live session started by this user, else None (expired, unknown, not theirs)."""
    stored = cache.get(_key(sid))
    if not stored:
        return None
    try:
        session = json.loads(crypto.decrypt(stored))
    except Exception:  # a rotated key or a foreign value: treat as gone
        return None
    if session.get("user_id") != user_id or session.get("expires_at", 0) <= time.time():
        return None
    return session


def _drop(sid: str) -> None:
    cache.delete(_key(sid))


def page(*, sid: str, user_id: int) -> LoginPage | None:
    """Return the public view of a live session, or None when it expired."""
    session = _load(sid, user_id)
    if session is None:
        return None
    return LoginPage(
        sid=sid,
        kind=session["kind"],
        credential_id=session.get("credential_id"),
        expires_at=session["expires_at"],
        user_code=session.get("user_code", ""),
        verification_uri=session.get("verification_uri", ""),
        verification_uri_complete=session.get("verification_uri_complete", ""),
        interval=max(int(session.get("interval") or 0), MIN_POLL_INTERVAL),
        provider=session.get("provider", ""),
        signin_url=session.get("signin_url", ""),
        redirect_uri=session.get("redirect_base", ""),
    )


# --- HTTP (the requests themselves are built and sent by gateway.kiro.client) -------------------


async def _send(
    call: Callable[..., Awaitable[Any]],
    *,
    host: str,
    proxy_url: str,
    credential_id: int | None,
    fields: dict[str, Any],
) -> tuple[int, Any]:
    """Send one login request through the effective proxy; return (status, decoded body or None)."""
    config = await db(selectors.gateway_config)
    access = None
    if credential_id is not None:
        access = await db(selectors.credential_access, credential_id=credential_id, config=config)
    if proxy_url:
        proxy = None if proxy_url.lower() == "direct" else kiro_client.Proxy(proxy_url)
    else:
        proxy = kiro_client.effective_proxy(access, config)  # credential's, else the global one
    try:
        response = await call(proxy=proxy, tls_backend=config.tls_backend, **fields)
    except httpx.HTTPError as exc:
        raise LoginError(f"{host} unreachable: {exc.__class__.__name__}") from None
    try:
        return response.status_code, json.loads(response.text)
    except ValueError:
        return response.status_code, None


def _post(
    session: dict[str, Any], call: Callable[..., Awaitable[Any]], base: str, **fields: Any
) -> tuple[int, Any]:
    """Run one `gateway.kiro.client` login call from sync code on a private loop (the admin is
    sync); `base` is the base URL it talks to, named when it is unreachable."""
    return operations.run_sync(
        _send,
        call=call,
        host=urlsplit(base).netloc,
        proxy_url=session.get("proxy_url", ""),
        credential_id=session.get("credential_id"),
        fields=fields,
    )


def _error_code(body: Any) -> str:
    if isinstance(body, dict):
        return str(body.get("error") or body.get("code") or "")
    return ""


def _described(status: int, body: Any) -> str:
    """Describe an error answer without echoing anything but the error fields."""
    if isinstance(body, dict):
        code = _error_code(body)
        text = str(body.get("error_description") or body.get("message") or "")[:200]
        return f"{status} {code}: {text}".strip().rstrip(":")
    return f"HTTP {status}"


# --- IdC device code (spec §8.4) ----------------------------------------------------------------


def provider_for(start_url: str) -> str:
    """Builder ID for the default start URL, Enterprise for any other (spec §8.4)."""
    return "BuilderId" if start_url.rstrip("/") == BUILDER_ID_START_URL else "Enterprise"


def idc_start(
    *,
    user_id: int,
    start_url: str = BUILDER_ID_START_URL,
    region: str = DEFAULT_REGION,
    priority: int | None = None,
    email: str = "",
    proxy_url: str = "",
    credential_id: int | None = None,
) -> LoginPage:
    """Register an OIDC client and open a device authorization; return the page to show."""
    start_url = start_url.strip() or BUILDER_ID_START_URL
    region = region.strip() or DEFAULT_REGION
    base = kiro_client.idc_auth_base(region)
    session: dict[str, Any] = {
        "kind": "idc",
        "user_id": user_id,
        "credential_id": credential_id,
        "priority": priority,
        "email": email,
        "proxy_url": proxy_url,
        "start_url": start_url,
        "region": region,
        "provider": provider_for(start_url),
    }
    status, body = _post(
        session, kiro_auth.register_client, base, region=region, issuer_url=start_url
    )
    if status != 200 or not isinstance(body, dict) or not body.get("clientId"):
        raise LoginError(f"client registration failed: {_described(status, body)}")
    session["client_id"], session["client_secret"] = body["clientId"], body.get("clientSecret")
    status, body = _post(
        session,
        kiro_auth.device_authorization,
        base,
        region=region,
        client_id=session["client_id"],
        client_secret=session["client_secret"],
        start_url=start_url,
    )
    if status != 200 or not isinstance(body, dict) or not body.get("deviceCode"):
        raise LoginError(f"device authorization failed: {_described(status, body)}")
    expires_in = int(body.get("expiresIn") or 600)
    session.update(
        device_code=body["deviceCode"],
        user_code=str(body.get("userCode") or ""),
        verification_uri=str(body.get("verificationUri") or ""),
        verification_uri_complete=str(
            body.get("verificationUriComplete") or body.get("verificationUri") or ""
        ),
        interval=int(body.get("interval") or MIN_POLL_INTERVAL),
        expires_at=time.time() + expires_in,
    )
    sid = uuid.uuid4().hex
    _save(sid, session)
    log.info("IdC device login started (session %s, region %s)", sid[:8], region)
    result = page(sid=sid, user_id=user_id)
    assert result is not None
    return result


def idc_poll(*, sid: str, user_id: int) -> LoginResult:
    """Make one device-code `/token` call; on success create or re-login the credential."""
    session = _load(sid, user_id)
    if session is None or session.get("kind") != "idc":
        return expired("device")
    # One poll at a time per session: two tabs must not both turn one grant into credentials.
    if not cache.add(_key(sid) + ":lock", 1, timeout=_LOCK_SECONDS):
        return LoginResult("pending", "Waiting for authorisation …")
    try:
        return _idc_poll_once(sid, session)
    finally:
        cache.delete(_key(sid) + ":lock")


def _idc_poll_once(sid: str, session: dict[str, Any]) -> LoginResult:
    try:
        status, body = _post(
            session,
            kiro_auth.device_token,
            kiro_client.idc_auth_base(session["region"]),
            region=session["region"],
            client_id=session["client_id"],
            client_secret=session["client_secret"],
            device_code=session["device_code"],
        )
    except LoginError as exc:
        return LoginResult("pending", f"{exc}; trying again")
    code = _error_code(body)
    if status != 200 and code == "authorization_pending":
        return LoginResult("pending", "Waiting for authorisation …")
    if status != 200 and code == "slow_down":
        session["interval"] = int(session.get("interval") or MIN_POLL_INTERVAL) + 5  # RFC 8628
        _save(sid, session)
        return LoginResult("pending", "The server asked to poll more slowly …")
    if status != 200 and code == "expired_token":
        _drop(sid)
        return expired("device")
    _drop(sid)  # the grant is spent, whatever follows (an error answer included)
    try:
        answer = _token_answer(status, body, failed="Login failed", answer="the token answer")
    except LoginError as exc:
        return LoginResult("error", str(exc))
    tokens = services.LoginTokens(
        auth_method="idc",
        **answer,
        provider=session["provider"],
        client_id=session["client_id"],
        client_secret=session["client_secret"],
        start_url=session["start_url"],
        region=session["region"],
    )
    return _finish(session, tokens)


# --- Social PKCE, paste mode (spec §8.4) --------------------------------------------------------


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def pkce_pair() -> tuple[str, str]:
    """Return (verifier, S256 challenge): a 32-byte base64url verifier and its digest."""
    verifier = _b64url(secrets.token_bytes(32))
    return verifier, _b64url(hashlib.sha256(verifier.encode()).digest())


def portal_url() -> str:
    """The Kiro sign-in portal (setting KIRO_SOCIAL_PORTAL_URL, read at call time)."""
    return str(settings.KIRO_SOCIAL_PORTAL_URL or SOCIAL_PORTAL_URL).rstrip("/")


def social_start(
    *,
    user_id: int,
    priority: int | None = None,
    email: str = "",
    proxy_url: str = "",
    credential_id: int | None = None,
) -> LoginPage:
    """Create a PKCE session and return the page with the portal sign-in URL."""
    verifier, challenge = pkce_pair()
    state = str(uuid.uuid4())
    query = urlencode(
        {
            "state": state,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "redirect_uri": SOCIAL_REDIRECT_BASE,
            "redirect_from": "KiroIDE",
        }
    )
    session = {
        "kind": "social",
        "user_id": user_id,
        "credential_id": credential_id,
        "priority": priority,
        "email": email,
        "proxy_url": proxy_url,
        "verifier": verifier,
        "state": state,
        "redirect_base": SOCIAL_REDIRECT_BASE,
        "signin_url": f"{portal_url()}/signin?{query}",
        "expires_at": time.time() + SOCIAL_TTL,
    }
    sid = uuid.uuid4().hex
    _save(sid, session)
    log.info("Social login started (session %s)", sid[:8])
    result = page(sid=sid, user_id=user_id)
    assert result is not None
    return result


def parse_redirect(url: str) -> dict[str, str]:
    """Extract code, state, login_option and path from a pasted redirect URL."""
    parts = urlsplit(url.strip())
    query = {k: v[0] for k, v in parse_qs(parts.query).items() if v}
    return {
        "code": query.get("code", ""),
        "state": query.get("state", ""),
        "login_option": query.get("login_option", ""),
        "error": query.get("error", ""),
        "path": parts.path or "",
    }


def social_complete(*, sid: str, user_id: int, redirect_url: str) -> LoginResult:
    """Check the state, exchange the code, then create or re-login the credential.

    A state mismatch is refused and the session kept, so the right URL can still be pasted.
    """
    session = _load(sid, user_id)
    if session is None or session.get("kind") != "social":
        return expired("social")
    found = parse_redirect(redirect_url)
    if found["error"]:
        return LoginResult("error", f"The portal answered with an error: {found['error'][:100]}")
    if not found["code"]:
        return LoginResult("error", "That URL has no code parameter; paste the full address.")
    if not secrets.compare_digest(found["state"], session["state"]):
        return LoginResult("error", "The state does not match this login; nothing was changed.")
    redirect_uri = session["redirect_base"] + found["path"]
    if found["login_option"]:
        redirect_uri += "?" + urlencode({"login_option": found["login_option"]})
    try:
        status, body = _post(
            session,
            kiro_auth.social_code_exchange,
            kiro_client.social_auth_base(SOCIAL_AUTH_REGION),
            region=SOCIAL_AUTH_REGION,
            code=found["code"],
            code_verifier=session["verifier"],
            redirect_uri=redirect_uri,
        )
    except LoginError as exc:
        return LoginResult("error", str(exc))
    _drop(sid)  # a code is single-use: whatever the answer, this session is spent
    try:
        answer = _token_answer(status, body, failed="Code exchange failed", answer="the answer")
    except LoginError as exc:
        return LoginResult("error", str(exc))
    arn = body.get("profileArn")
    tokens = services.LoginTokens(
        auth_method="social",
        **answer,
        profile_arn=arn if isinstance(arn, str) and arn.startswith("arn:") else "",
    )
    return _finish(session, tokens)


# --- shared ------------------------------------------------------------------------------------


def expired(kind: str) -> LoginResult:
    """Return the result for a session that is gone (expired, unknown, or another user's)."""
    lifetime = "10 minutes" if kind == "social" else "the device code's lifetime"
    return LoginResult(
        "expired", f"This login session has expired (sessions last {lifetime}); start again."
    )


def _token_answer(status: int, body: Any, *, failed: str, answer: str) -> dict[str, Any]:
    """Return the tokens of a successful token answer (device code or social code exchange):
    refresh_token, access_token and expires_at. Raise LoginError, its message starting with
    `failed`, for an error answer or one that lacks a token (spec §8.4: no refresh token is an
    error); `answer` names the answer in that message."""
    if status != 200 or not isinstance(body, dict):
        raise LoginError(f"{failed}: {_described(status, body)}")
    for key, name in (("refreshToken", "refresh token"), ("accessToken", "access token")):
        if not body.get(key):
            raise LoginError(f"{failed}: {answer} has no {name}.")
    return {
        "refresh_token": str(body["refreshToken"]),
        "access_token": str(body["accessToken"]),
        "expires_at": _expiry(body),
    }


def _expiry(body: dict[str, Any]) -> datetime:
    """Return expiresAt when given (ISO or epoch), else now + expiresIn (spec §8.4)."""
    value = body.get("expiresAt")
    if isinstance(value, str) and value:
        parsed = parse_datetime(value)
        if parsed is not None:
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        seconds = value / 1000 if value > 10**11 else value
        return datetime.fromtimestamp(seconds, tz=UTC)
    expires_in = body.get("expiresIn")
    if not isinstance(expires_in, int | float) or isinstance(expires_in, bool):
        expires_in = 3600
    return timezone.now() + timedelta(seconds=float(expires_in))


def _finish(session: dict[str, Any], tokens: services.LoginTokens) -> LoginResult:
    """Store the tokens (new credential or re-login), then fetch the balance (spec §8.1)."""
    credential_id = session.get("credential_id")
    try:
        if credential_id is None:
            credential_id = services.credential_create_from_login(
                tokens=tokens,
                priority=session.get("priority"),
                email=session.get("email") or "",
                proxy_url=session.get("proxy_url") or "",
            )
            created = True
        else:
            services.credential_relogin(credential_id=credential_id, tokens=tokens)
            created = False
    except ValueError as exc:
        return LoginResult("error", f"Login succeeded but the credential was not saved: {exc}")
    warning = ""
    try:
        operations.run_sync(operations.check_balance, credential_id=credential_id, force=True)
    except operations.OperationError as exc:
        warning = f"The balance could not be fetched: {exc}"
    log.info("%s login stored credential #%s", tokens.auth_method, credential_id)
    verb = "created" if created else "re-logged in"
    return LoginResult(
        "done", f"Credential #{credential_id} {verb}.", credential_id, created, warning
    )
