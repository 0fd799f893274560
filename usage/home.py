"""Reads for the operator home (the admin index): the pool's state, balances, refresh failures,
traffic over the last hour and day, the models served, and the background jobs' last runs.

The home costs the same few queries whatever the size of the usage table: one over the
credentials, one over the job leases and two over the usage records, aggregated in SQL (the
day's slices and the last hour's models, then the p95 latencies of both windows). Each section
is read only when the user may view the model behind it.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from django.contrib.auth.models import AbstractUser, AnonymousUser
from django.urls import reverse
from django.utils import timezone

from credentials import fastsql, jobs
from credentials.models import AuthMethod, Credential, DisabledReason, JobLock
from usage.dashboard import ERROR_STATUSES  # errors as the usage dashboard counts them
from usage.models import UsageRecord, UsageStatus

HOUR = timedelta(hours=1)
DAY = timedelta(hours=24)
FIVE = timedelta(minutes=5)
HOUR_SLICES = HOUR // FIVE  # the sparkline of the last hour: 12 five-minute slices
BALANCE_ROWS = 15
P95 = 0.95

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
class Slice:
    """The records of one stretch of time: how many, how many failed or succeeded, credits."""

    requests: int
    errors: int
    successes: int
    credits: float


@dataclass(frozen=True, slots=True)
class Traffic:
    """The last 24 hours: 23 hourly slices, then the last hour's 12 five-minute slices; and
    the requests of the last hour per model sent."""

    slices: list[Slice]
    by_model_hour: Counter[str]

    @property
    def hour(self) -> list[Slice]:
        return self.slices[-HOUR_SLICES:]

    def hourly(self) -> list[Slice]:
        """Return the 24 hours of the day, the last one summed from its five-minute slices."""
        return [*self.slices[:-HOUR_SLICES], total(self.hour)]


def total(slices: list[Slice]) -> Slice:
    return Slice(
        sum(s.requests for s in slices),
        sum(s.errors for s in slices),
        sum(s.successes for s in slices),
        sum(s.credits for s in slices),
    )


def traffic_spans(now: datetime) -> list[tuple[datetime, datetime]]:
    """Return the [start, end) of each slice of the 24 hours before `now`."""
    since, hour_start = now - DAY, now - HOUR
    hours = [(since + HOUR * i, since + HOUR * (i + 1)) for i in range(DAY // HOUR - 1)]
    fives = [(hour_start + FIVE * i, hour_start + FIVE * (i + 1)) for i in range(HOUR_SLICES)]
    return hours + fives


def usage_traffic(*, now: datetime) -> Traffic:
    """Aggregate the records of the 24 hours before `now` per slice, and the last hour's per
    model sent, in one query.

    One aggregate per slice, glued with UNION ALL: each reads a range of the created_at index
    and no GROUP BY has to sort the day's records (a sort of 100,000 rows cost SQLite more
    than all the slices together; bench/admin_home.py).
    """
    t = UsageRecord
    created, status = fastsql.column(t, "created_at"), fastsql.column(t, "status")
    figures = (
        f"COUNT(*), SUM(CASE WHEN {status} IN (%s, %s) THEN 1 ELSE 0 END), "
        f"SUM(CASE WHEN {status} = %s THEN 1 ELSE 0 END), SUM({fastsql.column(t, 'credits')}) "
        f"FROM {fastsql.table(t)} WHERE {created} >= %s AND {created} < %s"
    )
    statuses = [*ERROR_STATUSES, UsageStatus.SUCCESS]
    spans = traffic_spans(now)
    arms, params = [], []
    for index, (start, end) in enumerate(spans):
        arms.append(f"SELECT {index}, NULL, {figures}")
        params += [
            *statuses,
            fastsql.prep(t, "created_at", start),
            fastsql.prep(t, "created_at", end),
        ]
    model = fastsql.column(t, "model_sent")
    arms.append(f"SELECT -1, {model}, {figures} GROUP BY {model}")
    params += [
        *statuses,
        fastsql.prep(t, "created_at", now - HOUR),
        fastsql.prep(t, "created_at", now),
    ]
    slices = [Slice(0, 0, 0, 0.0)] * len(spans)
    by_model_hour: Counter[str] = Counter()
    for index, model_sent, count, failed, succeeded, spent in fastsql.fetch(
        " UNION ALL ".join(arms), params
    ):
        if index < 0:
            if model_sent:
                by_model_hour[model_sent] += count
            continue
        slices[index] = Slice(count, int(failed or 0), int(succeeded or 0), float(spent or 0.0))
    return Traffic(slices, by_model_hour)


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


def sparkline(slices: list[Slice], starts: list[datetime]) -> dict[str, list[Any]]:
    return {
        "labels": [timezone.localtime(start).strftime("%H:%M") for start in starts],
        "requests": [s.requests for s in slices],
        "errors": [s.errors for s in slices],
        "credits": [round(s.credits, 4) for s in slices],
    }


def usage_windows(now: datetime) -> tuple[list[WindowFigures], dict[str, Any], Traffic]:
    """Return the figures of the last hour and day, their sparkline series, and the traffic;
    two queries."""
    traffic = usage_traffic(now=now)
    hour, day = total(traffic.hour), total(traffic.slices)
    p95_hour, p95_day = usage_p95(
        windows=[(now - HOUR, now, hour.successes), (now - DAY, now, day.successes)]
    )
    windows = [
        WindowFigures(
            "1h", "Last hour", hour.requests, hour.errors, p95_hour, round(hour.credits, 4)
        ),
        WindowFigures(
            "24h", "Last 24 hours", day.requests, day.errors, p95_day, round(day.credits, 4)
        ),
    ]
    spans = traffic_spans(now)
    sparklines = {
        "1h": sparkline(traffic.hour, [start for start, _ in spans[-HOUR_SLICES:]]),
        "24h": sparkline(traffic.hourly(), [now - DAY + HOUR * i for i in range(DAY // HOUR)]),
    }
    return windows, sparklines, traffic


def model_rows(traffic: Traffic | None, listed: Counter[str] | None) -> list[ModelRow]:
    """Merge the models sent in the last hour with those the credentials' cached lists hold."""
    names = set(traffic.by_model_hour if traffic else ()) | set(listed or ())
    rows = [
        ModelRow(
            model=name,
            requests_hour=traffic.by_model_hour[name] if traffic else None,
            listed_by=listed[name] if listed is not None else None,
        )
        for name in names
    ]
    return sorted(rows, key=lambda row: (-(row.requests_hour or 0), row.model))


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


def operator_home(*, user: AbstractUser | AnonymousUser, now: datetime | None = None) -> Home:
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
