"""Each credential's upstream model list, kept fresh for model-aware routing (spec kiro-ops §3.10).

After a request is served, a credential whose list is missing or older than
`modelCacheTtlSecs` has it fetched in the background (ListAvailableModels); at most one fetch
per credential at a time in a process, and a failed fetch keeps the last good list ("stale").
Routing then skips credentials whose loaded list lacks the requested model.
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import datetime, timedelta

import httpx
from django.utils import timezone

from credentials import services
from credentials.selectors import CredentialAccess, GatewayConfig
from gateway import tokens, upstream
from gateway.db import db

log = logging.getLogger(__name__)
_in_flight: set[int] = set()
_tasks: set[asyncio.Task] = set()
# After a failed refresh the list stays stale (the last good list is kept, spec kiro-ops
# §3.10); without a pause every request of that credential would start another call.
RETRY_AFTER_FAILURE_SECS = 60.0
_retry_at: dict[int, float] = {}


def parse_models(body: str) -> list[str] | None:
    """Return the lower-cased model ids of a ListAvailableModels answer, or None if unusable."""
    try:
        data = json.loads(body)
    except ValueError:
        return None
    models = data.get("models") if isinstance(data, dict) else None
    if not isinstance(models, list):
        return None
    ids = [m.get("modelId") for m in models if isinstance(m, dict)]
    return sorted({i.lower() for i in ids if isinstance(i, str) and i.strip()})


def is_stale(checked_at: datetime | None, ttl_secs: int) -> bool:
    return checked_at is None or timezone.now() - checked_at > timedelta(seconds=ttl_secs)


async def refresh(access: CredentialAccess, config: GatewayConfig) -> list[str] | None:
    """Fetch and store one credential's model list; None (list kept) when that fails."""
    try:
        response = await upstream.get_rest(
            access, tokens.bearer(access), config, "/ListAvailableModels?origin=AI_EDITOR"
        )
    except httpx.HTTPError as exc:
        log.warning("model list of credential %s: %s", access.id, exc.__class__.__name__)
        return None
    models = parse_models(response.text) if response.status_code == 200 else None
    if models is None:
        log.warning("model list of credential %s: status %s", access.id, response.status_code)
        return None
    await db(services.credential_set_models, credential_id=access.id, models=models)
    return models


def forget_failures() -> None:
    """Let every credential's list be refreshed again at once (tests, credential edits)."""
    _retry_at.clear()


def refresh_soon(access: CredentialAccess, config: GatewayConfig) -> None:
    """Start a background refresh of this credential's list unless one is running."""
    loop = asyncio.get_running_loop()
    if access.id in _in_flight or _retry_at.get(access.id, 0.0) > loop.time():
        return
    _in_flight.add(access.id)

    async def run() -> None:
        try:
            if await refresh(access, config) is None:
                _retry_at[access.id] = loop.time() + RETRY_AFTER_FAILURE_SECS
            else:
                _retry_at.pop(access.id, None)
        finally:
            _in_flight.discard(access.id)

    task = loop.create_task(run())
    _tasks.add(task)  # keep a reference until done
    task.add_done_callback(_tasks.discard)
