"""The prompt-cache simulation's store: which prefixes were seen, shared by every process.

`meter` runs in the request's first database trip (gateway.api.views._begin, a worker
thread), so its cache I/O never blocks the event loop. Entries live in the Django cache alias
`prompt_cache`: Redis when REDIS_URL is set, so that every gateway process agrees, else a
bounded in-process store (4,096 entries, as ZyphrZero's). A hit is written back, which
refreshes its TTL as Anthropic's cache does. If the store fails, the request is served with
the upstream's own figures and a warning is logged.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Mapping
from typing import Any, Final

from django.core.cache import caches

from gateway.protocol.models import ConversionError
from gateway.protocol.prompt_cache import estimate, plan, scope_seed
from gateway.protocol.tokens import CacheEstimate

log = logging.getLogger(__name__)
ALIAS: Final = "prompt_cache"
_PREFIX: Final = "pc1:"


def meter(body: Mapping[str, Any], *, key_id: int | None, system_key: bool) -> CacheEstimate | None:
    """Look up and record the request's cache breakpoints; return its cache split.

    Returns an empty estimate (everything uncached) for a request outside any scope (the
    system key without a session), and None when the store failed or the body is malformed
    (the conversion answers that one with a 400)."""
    seed = scope_seed(body, key_id=key_id, system_key=system_key)
    if seed is None:
        return CacheEstimate()
    try:
        cache_plan = plan(body, seed)
    except ConversionError:
        return None
    if not cache_plan.segments:
        return CacheEstimate()
    store = caches[ALIAS]
    try:
        found = store.get_many([_PREFIX + s.key for s in cache_plan.segments])
        by_ttl: dict[int, dict[str, int]] = defaultdict(dict)
        for segment in cache_plan.segments:
            by_ttl[segment.ttl][_PREFIX + segment.key] = segment.tokens
        for ttl, entries in by_ttl.items():
            store.set_many(entries, timeout=ttl)
    except Exception as exc:  # a store outage must not fail the request
        log.warning("prompt-cache store unavailable (%s); upstream figures used", exc)
        return None
    return estimate(cache_plan, (key.removeprefix(_PREFIX) for key in found))
