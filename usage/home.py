"""Reads for the operator home (the admin index): the pool's state, balances, refresh failures,
traffic over the last hour and day, the models served, and the background jobs' last runs.

The home costs the same few queries whatever the size of the usage table: one over the
credentials, one over the job leases and two over the usage records, aggregated in SQL (five-
minute buckets over the last 24 hours, then the p95 latencies of both windows). Each section is
read only when the user may view the model behind it.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from credentials import fastsql, jobs
from credentials.models import AuthMethod, Credential, DisabledReason, JobLock
from usage.models import UsageRecord, UsageStatus

HOUR = timedelta(hours=1)
DAY = timedelta(hours=24)
BUCKET_SECONDS = 300
BUCKETS = int(DAY.total_seconds()) // BUCKET_SECONDS  # 288 five-minute buckets in 24 hours
HOUR_BUCKETS = int(HOUR.total_seconds()) // BUCKET_SECONDS  # the last 12 of them
BUCKETS_PER_HOUR = HOUR_BUCKETS
BALANCE_ROWS = 15
# Errors as the usage dashboard counts them: the gateway's own errors and its refusals.
ERROR_STATUSES = (UsageStatus.ERROR, UsageStatus.REJECTED)
P95 = 0.95

# Which five-minute bucket of [since, since + 24 h) a record falls in, per database.
_BUCKET_SQL = {
    "sqlite": "CAST((julianday({col}) - julianday(%s)) * 86400 / {size} AS INTEGER)",
    "postgresql": "CAST(FLOOR(EXTRACT(EPOCH FROM ({col} - %s)) / {size}) AS INTEGER)",
}

CredentialFilter = tuple[tuple[str, str], ...]


# --- what the page shows ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StateCard:
    """A number of credentials in one state, and the credential list filtered to them."""

    key: str
    label: str
    count: int
    url: str


@dataclass(frozen=True, slots=True)
class BalanceRow:
    credential_id: int
    label: str
    used: float
    limit: float
    remaining: float
    percent_used: int  # 0..100, the bar's width
    checked_at: datetime | None


@dataclass(frozen=True, slots=True)
class RefreshFailureRow:
    credential_id: int
    label: str
    failed_at: datetime
    consecutive: int
    disabled_reason: str


@dataclass(frozen=True, slots=True)
class WindowFigures:
    key: str
    label: str
    requests: int
    errors: int
    p95_ms: int | None
    credits: float


@dataclass(frozen=True, slots=True)
class ModelRow:
    model: str
    requests_hour: int | None
    requests_day: int | None
    listed_by: int | None


@dataclass(frozen=True, slots=True)
class JobRow:
    name: str
    interval_seconds: int
    last_run_at: datetime | None
    last_result: str
    overdue: bool


@dataclass(slots=True)
class Home:
    """Everything the operator home shows; a section is None when the user may not see it."""

    now: datetime
    states: list[StateCard] | None = None
    credential_total: int = 0
    balances: list[BalanceRow] | None = None
    balances_more: int = 0
    refresh_failures: list[RefreshFailureRow] | None = None
    windows: list[WindowFigures] | None = None
    sparklines: dict[str, Any] = field(default_factory=dict)
    models: list[ModelRow] | None = None
    jobs: list[JobRow] | None = None


# --- credentials ------------------------------------------------------------------------------


CREDENTIAL_FIELDS = (
    "id",
    "name",
    "email",
    "auth_method",
    "enabled",
    "disabled_reason",
    "cooldown_until",
    "balance",
    "balance_checked_at",
    "available_models",
    "refresh_failure_count",
    "last_refresh_failure_at",
)


def credential_rows() -> list[dict[str, Any]]:
    """Read what the home shows of every credential, secrets excluded; one query."""
    return list(Credential.objects.order_by("priority", "id").values(*CREDENTIAL_FIELDS))


def credential_label(row: dict[str, Any]) -> str:
    """Name a credential as its __str__ does, from a values() row."""
    try:
        kind = AuthMethod(row["auth_method"]).label
    except ValueError:
        kind = row["auth_method"] or "credential"
    return f"#{row['id']} {row['name'] or row['email'] or kind}"


def credential_list_url(query: CredentialFilter) -> str:
    """Return the credential change list filtered by `query`."""
    return reverse("admin:credentials_credential_changelist") + "?" + urlencode(query)


def is_cooling(row: dict[str, Any], now: datetime) -> bool:
    return row["enabled"] and row["cooldown_until"] is not None and row["cooldown_until"] > now


def state_cards(rows: list[dict[str, Any]], now: datetime) -> list[StateCard]:
    """Count the credentials enabled, cooling down, and disabled per reason."""
    enabled = sum(1 for row in rows if row["enabled"] and not is_cooling(row, now))
    cooling = sum(1 for row in rows if is_cooling(row, now))
    cards = [
        StateCard("enabled", "Enabled", enabled, credential_list_url((("state", "enabled"),))),
        StateCard("cooling", "Cooling down", cooling, credential_list_url((("state", "cooling"),))),
    ]
    reasons = Counter(row["disabled_reason"] for row in rows if not row["enabled"])
    labels = dict(DisabledReason.choices)
    for reason, count in sorted(reasons.items(), key=lambda item: (-item[1], item[0])):
        query = (("state", "disabled"), ("disabled_reason__exact", reason))
        label = labels.get(reason, reason) if reason else "no reason given"
        cards.append(
            StateCard(
                f"disabled-{reason or 'none'}",
                f"Disabled: {label}",
                count,
                credential_list_url(query),
            )
        )
    return cards


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return 0.0
    return float(value)


def balance_row(row: dict[str, Any]) -> BalanceRow | None:
    """Return a credential's balance for the home, or None when it has none."""
    balance = row["balance"]
    if not isinstance(balance, dict):
        return None
    used, limit = _number(balance.get("current_usage")), _number(balance.get("usage_limit"))
    remaining = _number(balance.get("remaining")) if "remaining" in balance else limit - used
    # The bar's width: the share used, 0 to 100; without a limit, full once anything is used.
    share = min(max(used / limit, 0.0), 1.0) if limit > 0 else float(used > 0)
    percent = round(share * 100)
    return BalanceRow(
        credential_id=row["id"],
        label=credential_label(row),
        used=used,
        limit=limit,
        remaining=remaining,
        percent_used=percent,
        checked_at=row["balance_checked_at"],
    )


def balances(rows: list[dict[str, Any]]) -> list[BalanceRow]:
    """Return the enabled credentials' balances, lowest remaining first."""
    found = [balance_row(row) for row in rows if row["enabled"]]
    return sorted(
        (row for row in found if row is not None),
        key=lambda row: (row.remaining, row.credential_id),
    )


def refresh_failures(rows: list[dict[str, Any]], now: datetime) -> list[RefreshFailureRow]:
    """Return the credentials whose token refresh failed in the last 24 hours, latest first."""
    labels = dict(DisabledReason.choices)
    failed = [
        RefreshFailureRow(
            credential_id=row["id"],
            label=credential_label(row),
            failed_at=row["last_refresh_failure_at"],
            consecutive=row["refresh_failure_count"],
            disabled_reason=""
            if row["enabled"]
            else labels.get(row["disabled_reason"], row["disabled_reason"] or "disabled"),
        )
        for row in rows
        if row["last_refresh_failure_at"] is not None and row["last_refresh_failure_at"] > now - DAY
    ]
    return sorted(failed, key=lambda row: row.failed_at, reverse=True)


def listed_models(rows: list[dict[str, Any]]) -> Counter[str]:
    """Count, per model id, the enabled credentials whose cached model list holds it."""
    listed: Counter[str] = Counter()
    for row in rows:
        models = row["available_models"]
        if row["enabled"] and isinstance(models, list):
            listed.update({m for m in models if isinstance(m, str)})
    return listed


# --- usage ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Traffic:
    """Usage of the last 24 hours in five-minute buckets, and per model sent."""

    requests: list[int]
    errors: list[int]
    successes: list[int]
    credits: list[float]
    by_model_hour: Counter[str]
    by_model_day: Counter[str]


def bucket_sql(col: str) -> str:
    try:
        template = _BUCKET_SQL[connection.vendor]
    except KeyError:
        raise NotImplementedError(f"no bucket SQL for {connection.vendor}") from None
    return template.format(col=col, size=BUCKET_SECONDS)


def usage_traffic(*, since: datetime, until: datetime) -> Traffic:
    """Aggregate the records of [since, since + 24 h) per five-minute bucket and model; one
    query, grouped in SQL (a few thousand rows at most come back)."""
    t = UsageRecord
    created, status, model = (
        fastsql.column(t, "created_at"),
        fastsql.column(t, "status"),
        fastsql.column(t, "model_sent"),
    )
    sql = (
        f"SELECT {bucket_sql(created)}, {model}, COUNT(*), "
        f"SUM(CASE WHEN {status} IN (%s, %s) THEN 1 ELSE 0 END), "
        f"SUM(CASE WHEN {status} = %s THEN 1 ELSE 0 END), "
        f"SUM({fastsql.column(t, 'credits')}) "
        f"FROM {fastsql.table(t)} WHERE {created} >= %s AND {created} < %s GROUP BY 1, 2"
    )
    start, end = fastsql.prep(t, "created_at", since), fastsql.prep(t, "created_at", until)
    rows = fastsql.fetch(sql, [start, *ERROR_STATUSES, UsageStatus.SUCCESS, start, end])
    requests, errors, successes = [0] * BUCKETS, [0] * BUCKETS, [0] * BUCKETS
    credits = [0.0] * BUCKETS
    by_model_hour: Counter[str] = Counter()
    by_model_day: Counter[str] = Counter()
    for bucket, model_sent, count, failed, succeeded, spent in rows:
        # Floating point may put a record a hair from an edge into the bucket beside it.
        index = min(max(int(bucket), 0), BUCKETS - 1)
        requests[index] += count
        errors[index] += int(failed or 0)
        successes[index] += int(succeeded or 0)
        credits[index] += float(spent or 0.0)
        if model_sent:
            by_model_day[model_sent] += count
            if index >= BUCKETS - HOUR_BUCKETS:
                by_model_hour[model_sent] += count
    return Traffic(requests, errors, successes, credits, by_model_hour, by_model_day)


def p95_offset(successes: int) -> int:
    """Return how many of the slowest requests to skip to reach the nearest-rank p95."""
    return successes - math.ceil(P95 * successes)


def usage_p95(*, windows: list[tuple[datetime, datetime, int]]) -> list[int | None]:
    """Return the p95 latency of the successful requests of each (since, until, successes)
    window, in one query: a top-N read from the slow end, no full sort."""
    t = UsageRecord
    created, latency = fastsql.column(t, "created_at"), fastsql.column(t, "latency_ms")
    selects, params = [], []
    for since, until, successes in windows:
        if successes <= 0:
            selects.append("NULL")
            continue
        selects.append(
            f"(SELECT {latency} FROM {fastsql.table(t)} WHERE {created} >= %s AND {created} < %s "
            f"AND {fastsql.column(t, 'status')} = %s ORDER BY {latency} DESC LIMIT 1 OFFSET %s)"
        )
        params += [
            fastsql.prep(t, "created_at", since),
            fastsql.prep(t, "created_at", until),
            UsageStatus.SUCCESS,
            p95_offset(successes),
        ]
    if not params:
        return [None] * len(windows)
    (row,) = fastsql.fetch("SELECT " + ", ".join(selects), params)
    return [None if value is None else int(value) for value in row]


def hourly(values: list[Any]) -> list[Any]:
    """Sum five-minute buckets into hours."""
    return [
        sum(values[start : start + BUCKETS_PER_HOUR])
        for start in range(0, len(values), BUCKETS_PER_HOUR)
    ]


def usage_windows(now: datetime) -> tuple[list[WindowFigures], dict[str, Any], Traffic]:
    """Return the figures of the last hour and day, their sparkline series, and the traffic."""
    since = now - DAY
    traffic = usage_traffic(since=since, until=now)
    hour = slice(BUCKETS - HOUR_BUCKETS, BUCKETS)
    p95_hour, p95_day = usage_p95(
        windows=[
            (now - HOUR, now, sum(traffic.successes[hour])),
            (since, now, sum(traffic.successes)),
        ]
    )
    windows = [
        WindowFigures(
            "1h",
            "Last hour",
            sum(traffic.requests[hour]),
            sum(traffic.errors[hour]),
            p95_hour,
            round(sum(traffic.credits[hour]), 4),
        ),
        WindowFigures(
            "24h",
            "Last 24 hours",
            sum(traffic.requests),
            sum(traffic.errors),
            p95_day,
            round(sum(traffic.credits), 4),
        ),
    ]
    hour_starts = [since + timedelta(seconds=BUCKET_SECONDS * i) for i in range(BUCKETS)][hour]
    day_starts = [since + HOUR * i for i in range(BUCKETS // BUCKETS_PER_HOUR)]
    sparklines = {
        "1h": {
            "labels": [timezone.localtime(s).strftime("%H:%M") for s in hour_starts],
            "requests": traffic.requests[hour],
            "errors": traffic.errors[hour],
            "credits": [round(c, 4) for c in traffic.credits[hour]],
        },
        "24h": {
            "labels": [timezone.localtime(s).strftime("%H:%M") for s in day_starts],
            "requests": hourly(traffic.requests),
            "errors": hourly(traffic.errors),
            "credits": [round(c, 4) for c in hourly(traffic.credits)],
        },
    }
    return windows, sparklines, traffic


def model_rows(traffic: Traffic | None, listed: Counter[str] | None) -> list[ModelRow]:
    """Merge the models sent in the last day with those the credentials' cached lists hold."""
    names = set(traffic.by_model_day if traffic else ()) | set(listed or ())
    rows = [
        ModelRow(
            model=name,
            requests_hour=traffic.by_model_hour[name] if traffic else None,
            requests_day=traffic.by_model_day[name] if traffic else None,
            listed_by=listed[name] if listed is not None else None,
        )
        for name in names
    ]
    return sorted(rows, key=lambda row: (-(row.requests_day or 0), row.model))


# --- jobs -------------------------------------------------------------------------------------


def job_rows(now: datetime) -> list[JobRow]:
    """Return every registered background job with its last run (one query)."""
    leases = {lock.name: lock for lock in JobLock.objects.all()}
    rows = []
    for job in jobs.registered():
        lease = leases.get(job.name)
        last_run = lease.last_run_at if lease else None
        overdue = last_run is None or now - last_run > timedelta(seconds=2 * job.interval_seconds)
        rows.append(
            JobRow(
                name=job.name,
                interval_seconds=job.interval_seconds,
                last_run_at=last_run,
                last_result=(lease.last_result if lease else "")[:200],
                overdue=overdue,
            )
        )
    return rows


# --- the page ---------------------------------------------------------------------------------


def operator_home(*, user: AbstractBaseUser | AnonymousUser, now: datetime | None = None) -> Home:
    """Return what the operator home shows to `user`: only the sections it may view."""
    now = now or timezone.now()
    home = Home(now=now)
    listed: Counter[str] | None = None
    traffic: Traffic | None = None
    if user.has_perm("credentials.view_credential"):
        rows = credential_rows()
        home.states = state_cards(rows, now)
        home.credential_total = len(rows)
        found = balances(rows)
        home.balances, home.balances_more = found[:BALANCE_ROWS], max(len(found) - BALANCE_ROWS, 0)
        home.refresh_failures = refresh_failures(rows, now)
        listed = listed_models(rows)
    if user.has_perm("usage.view_usagerecord"):
        home.windows, home.sparklines, traffic = usage_windows(now)
    if listed is not None or traffic is not None:
        home.models = model_rows(traffic, listed)
    if user.has_perm("credentials.view_joblock"):
        home.jobs = job_rows(now)
    return home
