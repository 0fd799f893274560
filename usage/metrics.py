"""Prometheus metrics of this process, plus the credential pool's state read from the database.

Counters and histograms live in process memory: with several gateway processes, each one
exposes its own `/metrics` and Prometheus scrapes every process (standard practice; sum them
in queries, e.g. `sum by (status) (rate(kiro_requests_total[5m]))`). Scraping through a load
balancer would sample one process at random. The exception is `kiro_credentials`, computed at
scrape time with one GROUP BY over the shared database, so every process reports the same pool.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator
from typing import Any

from django.db.models import BooleanField, Case, Count, Q, Value, When
from django.utils import timezone
from prometheus_client import (
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from credentials.metrics import REGISTRY
from credentials.models import Credential, DisabledReason
from usage.models import AttemptOutcome, UsageRecord

log = logging.getLogger(__name__)

# Clients choose model ids and unknown ones pass through verbatim (spec kiro-protocol §3.2):
# past this many distinct values a process reports further models as "other".
MAX_MODEL_LABELS = 100
OTHER_MODEL = "other"


REQUESTS = Counter(
    "kiro_requests",
    "Client requests by endpoint, final status and model sent upstream.",
    ["endpoint", "status", "model"],
    registry=REGISTRY,
)
ATTEMPTS = Counter(
    "kiro_upstream_attempts",
    "Tries against Kiro by outcome class (spec kiro-ops §5.4).",
    ["outcome"],
    registry=REGISTRY,
)
TOKENS = Counter(
    "kiro_tokens",
    "Tokens of client requests by kind and model.",
    ["kind", "model"],
    registry=REGISTRY,
)
CREDITS = Counter(
    "kiro_credits",
    "Kiro metering credits consumed, by model.",
    ["model"],
    registry=REGISTRY,
)
LATENCY = Histogram(
    "kiro_request_duration_seconds",
    "End-to-end time of client requests.",
    ["endpoint"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600),
    registry=REGISTRY,
)
TTFT = Histogram(
    "kiro_time_to_first_token_seconds",
    "Time from the request to the first translated content sent to the client.",
    ["endpoint"],
    buckets=(0.1, 0.25, 0.5, 1, 1.5, 2, 3, 5, 8, 13, 20, 30, 60),
    registry=REGISTRY,
)
for _outcome in AttemptOutcome.values:
    ATTEMPTS.labels(outcome=_outcome)

_models_seen: set[str] = set()
_models_lock = threading.Lock()


def _model_label(record: UsageRecord) -> str:
    model = (record.model_sent or record.model_requested or "none")[:100]
    with _models_lock:
        if model in _models_seen:
            return model
        if len(_models_seen) >= MAX_MODEL_LABELS:
            return OTHER_MODEL
        _models_seen.add(model)
        return model


def observe_record(record: UsageRecord, attempts: Iterable[Any]) -> None:
    """Count one finished request and its upstream tries; never raise.

    `attempts` are AttemptDraft or UpstreamAttempt objects (anything with `.outcome`).
    """
    try:
        model = _model_label(record)
        REQUESTS.labels(endpoint=record.endpoint, status=record.status, model=model).inc()
        for attempt in attempts:
            ATTEMPTS.labels(outcome=attempt.outcome or AttemptOutcome.UNKNOWN).inc()
        for kind, value in (
            ("input", record.input_tokens),
            ("output", record.output_tokens),
            ("cache_creation", record.cache_creation_tokens),
            ("cache_read", record.cache_read_tokens),
        ):
            if value:
                TOKENS.labels(kind=kind, model=model).inc(value)
        if record.credits > 0:
            CREDITS.labels(model=model).inc(record.credits)
        LATENCY.labels(endpoint=record.endpoint).observe(max(0, record.latency_ms) / 1000)
        if record.first_token_ms is not None:
            TTFT.labels(endpoint=record.endpoint).observe(max(0, record.first_token_ms) / 1000)
    except Exception:  # metrics must never break the write of a usage record
        log.exception("could not observe usage record %s", record.pk)


def credential_state_counts() -> dict[tuple[str, str], int]:
    """Count credentials by (state, disabled reason) with one GROUP BY query.

    States are exclusive: `enabled`, `cooling_down` (enabled, cooldown in the future) and
    `disabled` (with its reason; `unknown` when none was recorded).
    """
    rows = (
        Credential.objects.annotate(
            cooling=Case(
                When(Q(enabled=True, cooldown_until__gt=timezone.now()), then=Value(True)),
                default=Value(False),
                output_field=BooleanField(),
            )
        )
        .order_by()  # Meta.ordering would otherwise join the GROUP BY
        .values("enabled", "disabled_reason", "cooling")
        .annotate(count=Count("id"))
    )
    counts: dict[tuple[str, str], int] = {}
    for row in rows:
        if not row["enabled"]:
            key = ("disabled", row["disabled_reason"] or "unknown")
        elif row["cooling"]:
            key = ("cooling_down", "")
        else:
            key = ("enabled", "")
        counts[key] = counts.get(key, 0) + row["count"]
    return counts


class CredentialStateCollector(Collector):
    """Report `kiro_credentials{state, reason}` from the database at scrape time."""

    def describe(self) -> list[Metric]:
        return [GaugeMetricFamily("kiro_credentials", "", labels=["state", "reason"])]

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "kiro_credentials",
            "Credentials by state (enabled, cooling_down, disabled) and disabled reason.",
            labels=["state", "reason"],
        )
        try:
            counts = credential_state_counts()
        except Exception:  # a scrape still answers with the process metrics
            log.exception("could not count credentials by state")
            return
        # Every state is reported, zeros included, so that series do not come and go.
        keys = {("enabled", ""), ("cooling_down", "")}
        keys |= {("disabled", reason) for reason in DisabledReason.values}
        for state, reason in sorted(keys | counts.keys()):
            family.add_metric([state, reason], counts.get((state, reason), 0))
        yield family


REGISTRY.register(CredentialStateCollector())


def metrics_render() -> bytes:
    """Render every metric in the Prometheus text format (queries the database: sync only)."""
    return generate_latest(REGISTRY)
