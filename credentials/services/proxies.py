"""The proxy pool: entries, their health, and assignment to credentials (kiro-ops §7)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from django.db.models import F
from django.utils import timezone

from credentials.models import (
    ProxyEntry,
    ProxyHealth,
    mask_proxy_url,
)
from gateway.kiro.proxies import proxy_url_problem

PROXY_FAILURES_BEFORE_DISABLE = 3


proxy_mask = mask_proxy_url  # one implementation, shared with ProxyEntry.__str__


def proxy_add(*, url: str, label: str = "") -> ProxyEntry:
    """Add one proxy to the pool; raise ValueError when invalid or a duplicate."""
    url = url.strip()
    problem = proxy_url_problem(url)
    if problem:
        raise ValueError(problem)
    if ProxyEntry.objects.filter(url=url).exists():
        raise ValueError("already in the pool")
    # The label doubles as the entry's name in history and messages: never the password.
    return ProxyEntry.objects.create(url=url, label=label.strip() or proxy_mask(url))


@dataclass(slots=True)
class ProxyLine:
    line: int
    url: str  # masked
    added: bool
    problem: str = ""
    proxy_id: int | None = None


def proxy_bulk_add(*, text: str) -> list[ProxyLine]:
    """Add one proxy per non-empty line; report each line (added, invalid, duplicate)."""
    report: list[ProxyLine] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        url = raw.strip()
        if not url or url.startswith("#"):
            continue
        try:
            entry = proxy_add(url=url)
        except ValueError as exc:
            report.append(ProxyLine(number, proxy_mask(url), False, str(exc)))
        else:
            report.append(ProxyLine(number, proxy_mask(url), True, proxy_id=entry.pk))
    return report


def proxy_record_check(*, proxy_id: int, healthy: bool, latency_ms: int | None) -> bool:
    """Store one health check; the third failure in a row disables the entry. Disabled?"""
    now = timezone.now()
    rows = ProxyEntry.objects.filter(pk=proxy_id)
    if healthy:
        rows.update(
            health=ProxyHealth.HEALTHY,
            latency_ms=latency_ms,
            last_checked_at=now,
            consecutive_failures=0,
        )
        return False
    rows.update(
        health=ProxyHealth.UNHEALTHY,
        latency_ms=None,
        last_checked_at=now,
        consecutive_failures=F("consecutive_failures") + 1,
    )
    return bool(
        rows.filter(enabled=True, consecutive_failures__gte=PROXY_FAILURES_BEFORE_DISABLE).update(
            enabled=False, auto_disabled=True
        )
    )


def proxy_set_enabled(*, proxy_ids: Iterable[int], enabled: bool) -> int:
    """Enable or disable pool entries; enabling clears the failure counter and auto flag."""
    rows = ProxyEntry.objects.filter(pk__in=list(proxy_ids))
    if enabled:
        return rows.update(enabled=True, consecutive_failures=0, auto_disabled=False)
    return rows.update(enabled=False)


def proxy_assignable_urls() -> list[str]:
    """Return the URLs round-robin may hand out: enabled and not unhealthy, in pool order."""
    return list(
        ProxyEntry.objects.filter(enabled=True)
        .exclude(health=ProxyHealth.UNHEALTHY)
        .order_by("pk")
        .values_list("url", flat=True)
    )


# --- background job leases ---------------------------------------------------------------------
