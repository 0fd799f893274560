"""Per-client-key limits: requests per minute, token and credit budgets per day and month.

Every gateway process shares the database, so the state lives there (Redis is not needed):

- `ClientKey.rpm_limit`, `daily_token_budget`, `monthly_token_budget`, `daily_credit_budget`,
  `monthly_credit_budget`; empty means unlimited.
- `ClientKeyWindow` rows of kind `day` and `month` (one each per key, rolled over in place at
  the start of a new day or calendar month in TIME_ZONE): the settled requests, tokens
  (input + output + cache creation + cache read) and credits of the window, and the peak
  tokens and credits of one request, kept across rollovers.
- The month row also carries the key's lifetime totals (requests, input tokens with the cached
  parts of the prompt, output tokens, credits, and since when), moved by the same UPDATE as
  the month's usage, so that they cost no statement of their own, and kept across rollovers;
  `client_key_reset_totals` (services) zeroes them.
- `ClientKeyWindow` rows of kind `request`, one per admitted request: it holds the request's
  estimate (`tokens`, `credits`) until the request is settled, and counts toward the key's
  requests per minute for 60 seconds after admission. A request that is never settled (its
  process died, its stream was never started) stops counting after RESERVATION_LEASE: a lease
  instead of a counter, so that a crash cannot leak a reservation for good.

A request is reserved before the upstream call (`limit_reserve`) and settled after it
(`limit_settle`, from the one place that writes the usage record; the gateway writes one for
every request, a client that left included) or released (`limit_release`, for a caller that
ends a request without a record). Each runs in one short transaction that first locks the
key's `ClientKey` row (`SELECT ... FOR UPDATE` on Postgres; SQLite's IMMEDIATE transactions
lock the database), so processes decide one at a time per key; no lock is held during the
upstream call. Keys without limits skip the reservation (the key lookup already tells,
`KeyIdentity.limited`) but are still settled, with atomic increments and no lock, so that their
usage is known when a limit is set later and the admin can show it.

Requests per minute: a sliding window. A request is refused when `rpm_limit` requests of the
key were admitted in the last 60 seconds; Retry-After is the time until enough of them are
older than 60 seconds. Refused requests do not count. Only the messages path (/v1/messages,
/cc/v1/messages and the OpenAI endpoints, which run it) is limited: count_tokens and
/v1/models are local answers that cost nothing upstream, and clients call them freely.

Budgets. For one budget B (for instance the daily tokens), let `used` be the settled usage of
the current window, `reserved` the sum of the estimates of the key's admitted, unsettled
requests, `in_flight` their number, and `e` the estimate of the new request: for tokens the
larger of its local input estimate and the peak tokens of one settled request of the key, for
credits the peak credits of one settled request; unknown (None) before the key has settled a
request that reached upstream. The request is admitted if and only if

    used < B  and  ( (e is known and used + reserved + e <= B)  or  in_flight == 0 )

(1) admits requests that fit even if every request in flight costs its estimate; (2) admits
one request that may cross the budget, and only while nothing else of the key is in flight.
Every budget of the key must admit; otherwise the refusal with the longest wait is returned:
429 rate_limit_error naming the budget, with Retry-After until the window resets when the
budget is used up, or BUSY_RETRY_SECONDS when it is only busy (requests in flight, no room).

Overshoot: settled usage exceeds B by less than the cost of one request, as long as no request
admitted by (1) costs more than its estimate (which, being a peak, fails only for a request
larger than every earlier one of the key; the excess of such a request is the only other
overshoot). Proof sketch: let H = used + the estimates of the requests in flight. (1) keeps
H <= B, and settling a request that costs at most its estimate does not raise H. (2) admits U
only when nothing is in flight and (1) refused it, so used + e_U > B; while U runs, (1)
refuses every request (used + reserved already counts e_U), so U runs alone. It settles at
used_0 + cost(U) < B + cost(U), since used_0 < B. After that, (1) admits only with room under
B, and (2) again only a lone request starting below B. Hence no more than one request is ever
admitted past the point where the budget is reached, and concurrent requests cannot add to
the overshoot. Before the first settled request the estimate is unknown and (2) serialises
the key's requests; reserved estimates carry across a window rollover (conservative).
Clocks of the processes are assumed to be in sync (NTP).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta

from django.db import transaction
from django.db.models import Count, Q, Sum
from django.utils import timezone

from credentials import fastsql
from credentials.models import ClientKey, ClientKeyWindow, LimitWindowKind

MINUTE = timedelta(seconds=60)
RESERVATION_LEASE = timedelta(minutes=30)
BUSY_RETRY_SECONDS = 5
LIMIT_FIELDS = (
    "rpm_limit",
    "daily_token_budget",
    "monthly_token_budget",
    "daily_credit_budget",
    "monthly_credit_budget",
)
_BUDGETS = (
    ("daily_token_budget", LimitWindowKind.DAY, "tokens", "daily token budget"),
    ("monthly_token_budget", LimitWindowKind.MONTH, "tokens", "monthly token budget"),
    ("daily_credit_budget", LimitWindowKind.DAY, "credits", "daily credit budget"),
    ("monthly_credit_budget", LimitWindowKind.MONTH, "credits", "monthly credit budget"),
)


@dataclass(frozen=True, slots=True)
class Reservation:
    """What `limit_reserve` took for one request; settle or release it exactly once."""

    key_id: int
    admission_id: int | None = None  # None: the key had no limits, nothing is held


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a request is refused; `reason` becomes the usage record's error type."""

    reason: str
    message: str
    retry_after: int


class LimitExceeded(Exception):
    """A limit of the client key refuses the request."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.message)
        self.refusal = refusal


@dataclass(frozen=True, slots=True)
class Budget:
    """One budget of a key in its current window, as the admission rule sees it."""

    field: str
    label: str
    unit: str
    limit: float
    used: float
    reserved: float
    estimate: float | None
    resets_at: datetime


# --- pure decisions -----------------------------------------------------------------------


def current_time() -> datetime:
    """Return the time limits are decided at (a seam for tests)."""
    return timezone.now()


def window_start(kind: str, now: datetime) -> datetime:
    """Return the start of the day or calendar month containing `now`, in TIME_ZONE."""
    local = timezone.localtime(now)
    day = local.date() if kind == LimitWindowKind.DAY else local.date().replace(day=1)
    return datetime.combine(day, time(), tzinfo=local.tzinfo)


def window_end(kind: str, now: datetime) -> datetime:
    """Return when the day or calendar month containing `now` ends, in TIME_ZONE."""
    start = window_start(kind, now)
    if kind == LimitWindowKind.DAY:
        day = start.date() + timedelta(days=1)
    else:
        day = (start.date().replace(day=28) + timedelta(days=4)).replace(day=1)
    return datetime.combine(day, time(), tzinfo=start.tzinfo)


def seconds_until(moment: datetime, now: datetime) -> int:
    """Return whole seconds (at least 1) from `now` until `moment`."""
    return max(1, math.ceil((moment - now).total_seconds()))


def format_amount(value: float, unit: str) -> str:
    """Render tokens as an integer and credits with up to four decimals."""
    if unit == "tokens":
        return f"{int(value):,}"
    return f"{value:,.4f}".rstrip("0").rstrip(".")


def rpm_refusal(*, limit: int, hits: Sequence[datetime], now: datetime) -> Refusal | None:
    """Refuse when `limit` admissions fall in the last minute (`hits`: oldest first)."""
    recent = [hit for hit in hits if hit > now - MINUTE]
    if len(recent) < limit:
        return None
    # The window frees when all but limit - 1 of the recent admissions are a minute old.
    frees_at = recent[len(recent) - limit] + MINUTE
    wait = seconds_until(frees_at, now)
    return Refusal(
        "key_rpm_limit",
        f"This API key is limited to {limit} requests per minute; retry in {wait} s.",
        wait,
    )


def budget_refusal(budget: Budget, *, in_flight: int, now: datetime) -> Refusal | None:
    """Apply the admission rule of the module docstring to one budget."""
    reason = "key_" + budget.field
    reset_wait = seconds_until(budget.resets_at, now)
    limit = format_amount(budget.limit, budget.unit)
    if budget.used >= budget.limit:
        resets = timezone.localtime(budget.resets_at).strftime("%Y-%m-%d %H:%M %Z")
        return Refusal(
            reason,
            f"The {budget.label} of this API key is used up "
            f"({format_amount(budget.used, budget.unit)} of {limit} {budget.unit}); "
            f"it resets at {resets}.",
            reset_wait,
        )
    fits = (
        budget.estimate is not None
        and budget.used + budget.reserved + budget.estimate <= budget.limit
    )
    if fits or in_flight == 0:
        return None
    left = format_amount(budget.limit - budget.used, budget.unit)
    return Refusal(
        reason,
        f"The {budget.label} of this API key is nearly used up ({left} of {limit} "
        f"{budget.unit} left) while requests of this key are in flight ({in_flight}); retry "
        "when they finish.",
        min(BUSY_RETRY_SECONDS, reset_wait),
    )


def longest(refusals: Sequence[Refusal | None]) -> Refusal | None:
    """Return the refusal that lasts longest: retrying before it ends is pointless."""
    found = [r for r in refusals if r is not None]
    return max(found, key=lambda r: r.retry_after) if found else None


def window_usage(row: ClientKeyWindow | None, kind: str, now: datetime) -> ClientKeyWindow:
    """Return the row's usage if it is the current window, else an empty unsaved window."""
    start = window_start(kind, now)
    if row is not None and row.start >= start:
        return row
    return ClientKeyWindow(
        kind=kind,
        start=start,
        peak_tokens=row.peak_tokens if row else None,
        peak_credits=row.peak_credits if row else None,
    )


def _peak(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return max(known) if known else None


# --- database services --------------------------------------------------------------------


def _prune(key_id: int, now: datetime) -> None:
    """Drop request rows that neither reserve (settled or expired) nor count per minute."""
    ClientKeyWindow.objects.filter(client_key_id=key_id, kind=LimitWindowKind.REQUEST).filter(
        Q(settled=True, start__lte=now - MINUTE) | Q(start__lte=now - RESERVATION_LEASE)
    ).delete()


def _locked_limits(key_id: int) -> dict[str, float | None] | None:
    return ClientKey.objects.select_for_update().filter(pk=key_id).values(*LIMIT_FIELDS).first()


def limit_reserve(*, key_id: int, estimate_tokens: int, now: datetime | None = None) -> Reservation:
    """Admit a request under the key's limits and hold its estimate, or raise LimitExceeded."""
    now = now or current_time()
    limits = ClientKey.objects.filter(pk=key_id).values(*LIMIT_FIELDS).first()
    if limits is None or all(v is None for v in limits.values()):
        return Reservation(key_id)
    with transaction.atomic():
        limits = _locked_limits(key_id)
        if limits is None or all(v is None for v in limits.values()):
            return Reservation(key_id)
        refusal, row_values = _decide(key_id, limits, max(0, estimate_tokens), now)
        if refusal is None:
            row = ClientKeyWindow.objects.create(
                client_key_id=key_id, kind=LimitWindowKind.REQUEST, start=now, **row_values
            )
    if refusal is not None:
        raise LimitExceeded(refusal)
    return Reservation(key_id, row.pk)


def _decide(
    key_id: int, limits: dict[str, float | None], estimate_tokens: int, now: datetime
) -> tuple[Refusal | None, dict[str, object]]:
    """Return the refusal, if any, and the fields of the request row to write otherwise."""
    _prune(key_id, now)
    admitted = ClientKeyWindow.objects.filter(client_key_id=key_id, kind=LimitWindowKind.REQUEST)
    open_ = Q(settled=False)
    stats = admitted.aggregate(
        recent=Count("pk", filter=Q(start__gt=now - MINUTE)),
        in_flight=Count("pk", filter=open_),
        tokens=Sum("tokens", filter=open_),
        credits=Sum("credits", filter=open_),
    )
    refusals: list[Refusal | None] = []
    rpm = limits["rpm_limit"]
    if rpm is not None and stats["recent"] >= rpm:
        hits = admitted.filter(start__gt=now - MINUTE).order_by("start")
        refusals.append(
            rpm_refusal(limit=int(rpm), hits=list(hits.values_list("start", flat=True)), now=now)
        )
    rows = {
        w.kind: w
        for w in ClientKeyWindow.objects.filter(
            client_key_id=key_id, kind__in=[LimitWindowKind.DAY, LimitWindowKind.MONTH]
        )
    }
    windows = {kind: window_usage(rows.get(kind), kind, now) for kind in rows}
    peak_tokens = _peak([w.peak_tokens for w in rows.values()])
    peak_credits = _peak([w.peak_credits for w in rows.values()])
    estimates = {
        "tokens": None if peak_tokens is None else max(float(estimate_tokens), peak_tokens),
        "credits": peak_credits,
    }
    reserved = {"tokens": float(stats["tokens"] or 0), "credits": float(stats["credits"] or 0)}
    for field, kind, unit, label in _BUDGETS:
        if limits[field] is None:
            continue
        window = windows.get(kind) or window_usage(None, kind, now)
        budget = Budget(
            field=field,
            label=label,
            unit=unit,
            limit=float(limits[field]),
            used=float(getattr(window, unit)),
            reserved=reserved[unit],
            estimate=estimates[unit],
            resets_at=window_end(kind, now),
        )
        refusals.append(budget_refusal(budget, in_flight=stats["in_flight"], now=now))
    row_values = {
        "requests": 1,
        "tokens": int(estimates["tokens"] if estimates["tokens"] is not None else estimate_tokens),
        "credits": estimates["credits"] or 0.0,
    }
    return longest(refusals), row_values


@dataclass(frozen=True, slots=True)
class Cost:
    """What one settled request adds to its key's windows and totals."""

    tokens: int
    credits: float
    input_tokens: int
    output_tokens: int


def limit_settle(
    *,
    reservation: Reservation,
    tokens: int,
    credits: float,
    input_tokens: int = 0,
    output_tokens: int = 0,
    now: datetime | None = None,
) -> None:
    """Free the request's reservation and add what it cost to the key's day and month.

    `tokens` (input, output and cache) counts toward the budgets; `input_tokens` and
    `output_tokens` toward the lifetime totals only.

    Runs in the caller's transaction when there is one (the usage record's), else in its own.
    A key that had no limits at admission holds nothing: its cost is added with atomic
    increments and no lock. A limited key's lock is taken first: call this before anything
    else in the transaction touches the key (an insert referencing it takes a share lock
    on Postgres, and two of those waiting to upgrade would deadlock)."""
    now = now or current_time()
    tokens, credits = max(0, int(tokens)), max(0.0, float(credits))
    with transaction.atomic(savepoint=False):
        if reservation.admission_id is not None:
            if _locked_limits(reservation.key_id) is None:
                return  # the key was deleted meanwhile
            ClientKeyWindow.objects.filter(pk=reservation.admission_id).update(settled=True)
            _prune(reservation.key_id, now)
        cost = Cost(tokens, credits, max(0, int(input_tokens)), max(0, int(output_tokens)))
        _add_cost(reservation.key_id, cost, now)


def _add_cost(key_id: int, cost: Cost, now: datetime) -> None:
    """Add one settled request to the key's day and month rows (atomic increments).

    The usual case is one UPDATE per window, hand-built (every request runs it,
    credentials/fastsql.py). The first request of a day or month rolls the row over in place
    with a conditional UPDATE, so concurrent settlers roll it over once and none of their
    increments is lost; the unique (key, kind) constraint makes creating the rows race-free.
    Peaks and the month row's lifetime totals are kept across rollovers."""
    with_peaks = cost.tokens > 0  # it reached upstream: a cost later estimates can rely on
    for kind in (LimitWindowKind.DAY, LimitWindowKind.MONTH):
        with_totals = kind == LimitWindowKind.MONTH
        sql = _increment_sql(with_peaks, with_totals)
        start = window_start(kind, now)
        params: list[object] = [cost.tokens, cost.credits]
        if with_peaks:
            params += [cost.tokens, cost.tokens, cost.credits, cost.credits]
        if with_totals:
            params += [cost.input_tokens, cost.output_tokens, cost.credits]
        params += [key_id, kind, fastsql.prep(ClientKeyWindow, "start", start)]
        if fastsql.execute(sql, params):
            continue
        if not ClientKey.objects.filter(pk=key_id).exists():
            return  # the key was deleted meanwhile
        defaults = {"start": start, "totals_since": now if with_totals else None}
        ClientKeyWindow.objects.get_or_create(client_key_id=key_id, kind=kind, defaults=defaults)
        ClientKeyWindow.objects.filter(client_key_id=key_id, kind=kind, start__lt=start).update(
            start=start, requests=0, tokens=0, credits=0.0
        )
        fastsql.execute(sql, params)


@functools.cache
def _increment_sql(with_peaks: bool, with_totals: bool) -> str:
    def c(name: str) -> str:
        return fastsql.column(ClientKeyWindow, name)

    sets = [
        f"{c('requests')} = {c('requests')} + 1",
        f"{c('tokens')} = {c('tokens')} + %s",
        f"{c('credits')} = {c('credits')} + %s",
    ]
    if with_peaks:
        for name in ("peak_tokens", "peak_credits"):
            sets.append(
                f"{c(name)} = CASE WHEN {c(name)} IS NULL OR {c(name)} < %s THEN %s "
                f"ELSE {c(name)} END"
            )
    if with_totals:
        sets.append(f"{c('total_requests')} = {c('total_requests')} + 1")
        for name in ("total_input_tokens", "total_output_tokens", "total_credits"):
            sets.append(f"{c(name)} = {c(name)} + %s")
    return (
        f"UPDATE {fastsql.table(ClientKeyWindow)} SET {', '.join(sets)} "
        f"WHERE {c('client_key')} = %s AND {c('kind')} = %s AND {c('start')} >= %s"
    )


def limit_release(*, reservation: Reservation, now: datetime | None = None) -> None:
    """Free the reservation of a request that ends without a usage record to settle."""
    if reservation.admission_id is None:
        return
    with transaction.atomic():
        if _locked_limits(reservation.key_id) is None:
            return
        ClientKeyWindow.objects.filter(pk=reservation.admission_id).update(settled=True)
        _prune(reservation.key_id, now or current_time())


@dataclass(frozen=True, slots=True)
class KeyTotals:
    """A key's lifetime totals (kept on its month row), for the admin."""

    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    credits: float = 0.0
    since: datetime | None = None


@dataclass(frozen=True, slots=True)
class KeyUsage:
    """A key's usage in the current day and month, and its lifetime totals, for the admin."""

    day: ClientKeyWindow
    month: ClientKeyWindow
    total: KeyTotals


def totals_of(row: ClientKeyWindow | None) -> KeyTotals:
    """Return the lifetime totals a month row carries (none without a row)."""
    if row is None:
        return KeyTotals()
    return KeyTotals(
        requests=row.total_requests,
        input_tokens=row.total_input_tokens,
        output_tokens=row.total_output_tokens,
        credits=row.total_credits,
        since=row.totals_since,
    )


def usage_of(windows: Sequence[ClientKeyWindow], now: datetime | None = None) -> KeyUsage:
    """Return the current day and month usage and the lifetime totals from a key's window
    rows (no queries)."""
    now = now or current_time()
    rows = {w.kind: w for w in windows if w.kind != LimitWindowKind.REQUEST}
    return KeyUsage(
        day=window_usage(rows.get(LimitWindowKind.DAY), LimitWindowKind.DAY, now),
        month=window_usage(rows.get(LimitWindowKind.MONTH), LimitWindowKind.MONTH, now),
        total=totals_of(rows.get(LimitWindowKind.MONTH)),
    )


def limit_in_flight(*, key_id: int, now: datetime | None = None) -> int:
    """Count the key's admitted requests that are not settled yet (within their lease)."""
    now = now or current_time()
    return ClientKeyWindow.objects.filter(
        client_key_id=key_id,
        kind=LimitWindowKind.REQUEST,
        settled=False,
        start__gt=now - RESERVATION_LEASE,
    ).count()
