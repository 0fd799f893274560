"""count_tokens by a remote Anthropic-compatible API (kiro.rs's countTokensApi* settings).

When `count_tokens_api_url` is set, `/v1/messages/count_tokens` forwards the client's body
there, through the global proxy, with the key as `x-api-key` or `Authorization: Bearer`, and
answers its `input_tokens`. Any failure (unreachable, slow, non-2xx, not a count) falls back to
the local estimate, so a broken counter never breaks Claude Code's context bar."""

from __future__ import annotations

import logging
from typing import Any, Final

import httpx

from credentials.selectors import GatewayConfig

log = logging.getLogger(__name__)
TIMEOUT: Final = httpx.Timeout(5.0, connect=2.0)


def _proxy(config: GatewayConfig) -> httpx.Proxy | None:
    if not config.proxy_url:
        return None
    auth = (config.proxy_username, config.proxy_password) if config.proxy_username else None
    return httpx.Proxy(config.proxy_url, auth=auth)


def _headers(config: GatewayConfig) -> dict[str, str]:
    headers = {"content-type": "application/json", "anthropic-version": "2023-06-01"}
    if config.count_tokens_api_key:
        if config.count_tokens_auth_type == "bearer":
            headers["authorization"] = f"Bearer {config.count_tokens_api_key}"
        else:
            headers["x-api-key"] = config.count_tokens_api_key
    return headers


async def remote_count(body: dict[str, Any], config: GatewayConfig) -> int | None:
    """Return the remote API's input_tokens for `body`, or None to use the local estimate."""
    url = config.count_tokens_api_url
    if not url:
        return None
    try:
        async with httpx.AsyncClient(timeout=TIMEOUT, proxy=_proxy(config)) as client:
            response = await client.post(url, json=body, headers=_headers(config))
        response.raise_for_status()
        tokens = response.json().get("input_tokens")
    except (httpx.HTTPError, ValueError, AttributeError) as exc:
        log.warning("remote count_tokens failed (%s); using the local estimate", type(exc).__name__)
        return None
    if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 0:
        log.warning("remote count_tokens answered no count; using the local estimate")
        return None
    return tokens
