"""The process's Prometheus registry, and the counters of the credentials layer.

`usage.metrics` adds the request counters to the same registry and renders `/metrics`; the
refresh counter lives here because token refresh (credentials.tokens) sits below usage."""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

log = logging.getLogger(__name__)

REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)
GCCollector(registry=REGISTRY)

REFRESH_RESULTS = ("success", "failure", "invalid_grant", "rate_limited")
REFRESHES = Counter(
    "kiro_token_refreshes",
    "Token refresh calls by result.",
    ["result"],
    registry=REGISTRY,
)
for _result in REFRESH_RESULTS:
    REFRESHES.labels(result=_result)


def observe_refresh(result: str) -> None:
    """Count one token refresh: success, failure, invalid_grant or rate_limited."""
    if result not in REFRESH_RESULTS:
        log.warning("unknown refresh result %r counted as failure", result)
        result = "failure"
    REFRESHES.labels(result=result).inc()
