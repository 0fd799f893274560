"""Each credential's upstream model list, kept fresh for model-aware routing (spec kiro-ops §3.10).

After a request is served, a credential whose list is missing or older than
`modelCacheTtlSecs` has it fetched in the background (ListAvailableModels); at most one fetch
per credential at a time in a process, and a failed fetch keeps the last good list ("stale").
Routing then skips credentials whose loaded list lacks the requested model.

Model resolution (protocol.catalogue) needs every list of the key's credentials: on a cold
cache, `catalogue()` fetches the missing ones first, joining a fetch already running, so that
a request never resolves differently on a cold cache than on a warm one (issue 9).
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import replace
from datetime import datetime, timedelta

import httpx
from django.utils import timezone

from credentials import selectors, services, tokens
from credentials.asyncdb import db
from credentials.pool import Candidate, listed_models, unknown_lists
from credentials.selectors import GatewayConfig
from gateway.kiro import client as kiro_client
from gateway.kiro.types import CredentialAccess
from gateway.protocol.catalogue import BUILTIN_KIRO_IDS

log = logging.getLogger(__name__)
_flights: dict[int, asyncio.Task[list[str] | None]] = {}
_tasks: set[asyncio.Task] = set()
# After a failed refresh the list stays stale (the last good list is kept, spec kiro-ops
# §3.10); without a pause every request of that credential would start another call.
RETRY_AFTER_FAILURE_SECS = 60.0
_retry_at: dict[int, float] = {}
# Lists this process fetched, with the loop time of the fetch. Requests that read the pool
# before a fetch landed in the database use it instead of fetching again, and so does the
# background refresh after such a request. Short, so that a list cleared by a credential
# edit (services: token replaced) is fetched again soon.
REUSE_FETCHED_SECS = 60.0
_fetched: dict[int, tuple[float, frozenset[str]]] = {}
#: How long a request waits for the missing lists of a cold cache; a list still missing
#: then counts as H's model table, and its fetch goes on in the background.
COLD_FETCH_TIMEOUT_SECS = 8.0


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
        access = await tokens.ensure_token(access, config)  # a cold fetch may come first
        response = await kiro_client.get_rest(
            access, tokens.bearer(access), config, "/ListAvailableModels?origin=AI_EDITOR"
        )
    except tokens.TokenError as exc:
        log.warning("model list of credential %s: no token (%s)", access.id, exc)
        return None
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
    _fetched.clear()
    _flights.clear()


def _flight(
    access: CredentialAccess, config: GatewayConfig, *, background: bool
) -> asyncio.Task[list[str] | None] | None:
    """Return the running fetch of this credential's list, or start one; None while a
    failure pauses its fetches (and, for the background refresh, after a recent fetch)."""
    running = _running(access.id)
    if running is not None:
        return running
    loop = asyncio.get_running_loop()
    now = loop.time()
    if _retry_at.get(access.id, 0.0) > now:
        return None
    if background and _recent(access.id, now) is not None:
        return None

    async def run() -> list[str] | None:
        try:
            models = await refresh(access, config)
            if models is None:
                _retry_at[access.id] = loop.time() + RETRY_AFTER_FAILURE_SECS
            else:
                _retry_at.pop(access.id, None)
                _fetched[access.id] = (loop.time(), frozenset(models))
            return models
        finally:
            if _flights.get(access.id) is task:
                del _flights[access.id]

    task = loop.create_task(run())
    _flights[access.id] = task
    _tasks.add(task)  # keep a reference until done
    task.add_done_callback(_tasks.discard)
    return task


def refresh_soon(access: CredentialAccess, config: GatewayConfig) -> None:
    """Start a background refresh of this credential's list unless one is running."""
    _flight(access, config, background=True)


def _accesses(ids: list[int], config: GatewayConfig) -> list[CredentialAccess]:
    found = (selectors.credential_access(credential_id=i, config=config) for i in ids)
    return [access for access in found if access is not None]


def _recent(credential_id: int, now: float) -> frozenset[str] | None:
    fetched = _fetched.get(credential_id)
    return fetched[1] if fetched is not None and now - fetched[0] < REUSE_FETCHED_SECS else None


def _running(credential_id: int) -> asyncio.Task[list[str] | None] | None:
    task = _flights.get(credential_id)
    loop = asyncio.get_running_loop()
    return task if task is not None and not task.done() and task.get_loop() is loop else None


async def fetch_lists(
    candidates: list[Candidate], config: GatewayConfig
) -> dict[int, frozenset[str]]:
    """Fetch these credentials' lists now, concurrently and bounded in time; return those
    that arrived. One fetch per credential in this process however many requests wait;
    a credential whose last fetch failed moments ago is not asked again (RETRY_AFTER...)."""
    now = asyncio.get_running_loop().time()
    fetched: dict[int, frozenset[str]] = {}
    flights: dict[int, asyncio.Task[list[str] | None] | None] = {}
    for c in candidates:
        recent = _recent(c.id, now)
        if recent is not None:
            fetched[c.id] = recent
        elif _retry_at.get(c.id, 0.0) <= now:
            flights[c.id] = _running(c.id)
    to_start = [cid for cid, task in flights.items() if task is None]
    if to_start:
        accesses = await db(_accesses, to_start, config)
        now = asyncio.get_running_loop().time()
        for access in accesses:
            recent = _recent(access.id, now)  # another request's fetch landed meanwhile
            if recent is not None:
                fetched[access.id] = recent
                del flights[access.id]
            else:
                flights[access.id] = _flight(access, config, background=False)
    running = {task for task in flights.values() if task is not None}
    if running:
        # Not cancelled on timeout: a slow list still lands in the cache for later requests.
        await asyncio.wait(running, timeout=COLD_FETCH_TIMEOUT_SECS)
    for credential_id, task in flights.items():
        if task is None or not task.done() or task.cancelled() or task.exception() is not None:
            continue
        models = task.result()
        if models is not None:
            fetched[credential_id] = frozenset(models)
    return fetched


async def catalogue(
    candidates: list[Candidate], *, group: str | None, config: GatewayConfig
) -> tuple[list[Candidate], frozenset[str]]:
    """Return the candidates with every list the key's catalogue lacks fetched first, and
    the union of their lists (a list that could not be fetched counts as H's table).

    The warm path (every list known) costs no query and no upstream call."""
    missing = unknown_lists(candidates, group=group)
    if missing:
        fetched = await fetch_lists(missing, config)
        if fetched:
            candidates = [
                replace(c, models=fetched[c.id]) if c.id in fetched else c for c in candidates
            ]
    return candidates, listed_models(candidates, group=group, unknown_as=BUILTIN_KIRO_IDS)
