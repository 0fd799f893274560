"""Reads for the usage dashboard: time series, breakdowns and top errors over a window."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any, TypedDict

from django.db.models import Count, F, FloatField, Q, QuerySet, Sum, Value
from django.db.models.functions import Coalesce, TruncDay, TruncHour
from django.utils import timezone

from credentials.models import ClientKey, Credential
from usage.models import UsageRecord, UsageStatus

BREAKDOWN_LIMIT = 10
# A request counts as an error when the gateway answered with an error of its own or refused
# it; an interrupted stream is the client's doing and is shown apart.
ERROR_STATUSES = (UsageStatus.ERROR, UsageStatus.REJECTED)


@dataclass(frozen=True, slots=True)
class Window:
    key: str
    label: str
    span: timedelta
    bucket: str  # "hour" or "day"


WINDOWS: dict[str, Window] = {
    "24h": Window("24h", "Last 24 hours", timedelta(hours=24), "hour"),
    "7d": Window("7d", "Last 7 days", timedelta(days=7), "day"),
    "30d": Window("30d", "Last 30 days", timedelta(days=30), "day"),
}
DEFAULT_WINDOW = "24h"


class SeriesPoint(TypedDict):
    bucket: str
    requests: int
    errors: int
    interrupted: int
    input_tokens: int
    output_tokens: int
    cache_creation_tokens: int
    cache_read_tokens: int
    credits: float


class BreakdownRow(TypedDict):
    id: int | None
    label: str
    requests: int
    errors: int
    input_tokens: int
    output_tokens: int
    credits: float


class ErrorTypeRow(TypedDict):
    error_type: str
    count: int


class Dashboard(TypedDict):
    window: str
    bucket: str
    since: str
    until: str
    totals: dict[str, Any]
    series: list[SeriesPoint]
    by_model: list[BreakdownRow]
    by_credential: list[BreakdownRow]
    by_client_key: list[BreakdownRow]
    top_errors: list[ErrorTypeRow]


def _aggregates() -> dict[str, Any]:
    """Return the per-group aggregates shared by the series and the breakdowns."""
    return {
        "requests": Count("id"),
        "errors": Count("id", filter=Q(status__in=ERROR_STATUSES)),
        "interrupted": Count("id", filter=Q(status=UsageStatus.INTERRUPTED)),
        "input_tokens": Coalesce(Sum("input_tokens"), 0),
        "output_tokens": Coalesce(Sum("output_tokens"), 0),
        "cache_creation_tokens": Coalesce(Sum("cache_creation_tokens"), 0),
        "cache_read_tokens": Coalesce(Sum("cache_read_tokens"), 0),
        "credits": Coalesce(Sum("credits"), Value(0.0), output_field=FloatField()),
    }


def _bucket_start(moment: datetime, bucket: str) -> datetime:
    """Return the start of the hour or day holding `moment`, in the current time zone."""
    local = timezone.localtime(moment)
    if bucket == "hour":
        return local.replace(minute=0, second=0, microsecond=0)
    return local.replace(hour=0, minute=0, second=0, microsecond=0)


def _next_bucket(start: datetime, bucket: str) -> datetime:
    """Return the start of the bucket after the one starting at `start`."""
    if bucket == "hour":
        return _bucket_start(start + timedelta(hours=1), "hour")
    # Days step on the calendar, not by 24 h, so that a DST change does not skip or repeat one.
    return timezone.make_aware(datetime.combine(start.date() + timedelta(days=1), time.min))


def _bucket_starts(since: datetime, until: datetime, bucket: str) -> list[datetime]:
    """Return every bucket start from the one holding `since` to the one holding `until`."""
    current = _bucket_start(since, bucket)
    last = _bucket_start(until, bucket)
    starts = []
    while current <= last:
        starts.append(current)
        current = _next_bucket(current, bucket)
    return starts


def usage_window_records(*, since: datetime, until: datetime) -> QuerySet[UsageRecord]:
    """Return the records created in [since, until)."""
    return UsageRecord.objects.filter(created_at__gte=since, created_at__lt=until)


def usage_series(*, since: datetime, until: datetime, bucket: str) -> list[SeriesPoint]:
    """Return one point per hour or day with requests, errors, tokens and credits; one query."""
    trunc = TruncHour if bucket == "hour" else TruncDay
    rows = (
        usage_window_records(since=since, until=until)
        .order_by()
        .annotate(bucket=trunc("created_at"))
        .values("bucket")
        .annotate(**_aggregates())
        .order_by("bucket")
    )
    found = {_bucket_start(row["bucket"], bucket): row for row in rows}
    points: list[SeriesPoint] = []
    for start in _bucket_starts(since, until, bucket):
        row = found.get(start, {})
        points.append(
            {
                "bucket": start.isoformat(),
                "requests": row.get("requests", 0),
                "errors": row.get("errors", 0),
                "interrupted": row.get("interrupted", 0),
                "input_tokens": row.get("input_tokens", 0),
                "output_tokens": row.get("output_tokens", 0),
                "cache_creation_tokens": row.get("cache_creation_tokens", 0),
                "cache_read_tokens": row.get("cache_read_tokens", 0),
                "credits": round(float(row.get("credits", 0.0)), 4),
            }
        )
    return points


def _breakdown(
    records: QuerySet[UsageRecord], *, key: str, labels: Callable[[list[Any]], dict[Any, str]]
) -> list[BreakdownRow]:
    """Group `records` by the `key` field, biggest first, named through `labels`."""
    rows = list(
        records.order_by()
        .values(group=F(key))
        .annotate(**_aggregates())
        .order_by("-requests", "group")[:BREAKDOWN_LIMIT]
    )
    names = labels([row["group"] for row in rows if row["group"] not in (None, "")])
    return [
        {
            "id": row["group"] if isinstance(row["group"], int) else None,
            "label": names.get(row["group"], "(none)"),
            "requests": row["requests"],
            "errors": row["errors"],
            "input_tokens": row["input_tokens"],
            "output_tokens": row["output_tokens"],
            "credits": round(float(row["credits"]), 4),
        }
        for row in rows
    ]


def usage_by_model(*, since: datetime, until: datetime) -> list[BreakdownRow]:
    """Return the busiest requested models of the window."""
    records = usage_window_records(since=since, until=until)
    return _breakdown(records, key="model_requested", labels=lambda models: {m: m for m in models})


def usage_by_credential(*, since: datetime, until: datetime) -> list[BreakdownRow]:
    """Return the busiest credentials of the window, named by label or email (never secrets)."""
    records = usage_window_records(since=since, until=until)

    def labels(ids: list[int]) -> dict[int, str]:
        found = Credential.objects.filter(pk__in=ids).only("name", "email", "auth_method")
        return {credential.pk: str(credential) for credential in found}

    return _breakdown(records, key="credential_id", labels=labels)


def usage_by_client_key(*, since: datetime, until: datetime) -> list[BreakdownRow]:
    """Return the busiest client keys of the window, by name (the key itself is never stored)."""
    records = usage_window_records(since=since, until=until)

    def labels(ids: list[int]) -> dict[int, str]:
        return dict(ClientKey.objects.filter(pk__in=ids).values_list("pk", "name"))

    return _breakdown(records, key="client_key_id", labels=labels)


def usage_top_errors(*, since: datetime, until: datetime) -> list[ErrorTypeRow]:
    """Return the most frequent error types of the window."""
    rows = (
        usage_window_records(since=since, until=until)
        .exclude(error_type="")
        .order_by()
        .values("error_type")
        .annotate(count=Count("id"))
        .order_by("-count", "error_type")[:BREAKDOWN_LIMIT]
    )
    return [{"error_type": row["error_type"], "count": row["count"]} for row in rows]


def usage_dashboard(*, window: str = DEFAULT_WINDOW, now: datetime | None = None) -> Dashboard:
    """Return everything the dashboard page shows for one window."""
    spec = WINDOWS.get(window, WINDOWS[DEFAULT_WINDOW])
    until = now or timezone.now()
    since = until - spec.span
    series = usage_series(since=since, until=until, bucket=spec.bucket)
    totals: dict[str, Any] = {
        name: sum(point[name] for point in series)  # type: ignore[literal-required]
        for name in (
            "requests",
            "errors",
            "interrupted",
            "input_tokens",
            "output_tokens",
            "cache_creation_tokens",
            "cache_read_tokens",
        )
    }
    totals["credits"] = round(sum(point["credits"] for point in series), 4)
    return {
        "window": spec.key,
        "bucket": spec.bucket,
        "since": since.isoformat(),
        "until": until.isoformat(),
        "totals": totals,
        "series": series,
        "by_model": usage_by_model(since=since, until=until),
        "by_credential": usage_by_credential(since=since, until=until),
        "by_client_key": usage_by_client_key(since=since, until=until),
        "top_errors": usage_top_errors(since=since, until=until),
    }
