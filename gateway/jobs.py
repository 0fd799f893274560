"""Background jobs: balance refresh, proxy health, retention (spec kiro-ops §3.13).

Any number of `manage.py run_jobs` processes may run: each job is guarded by a lease in
`JobLock` claimed with a conditional UPDATE, and the lease lasts one interval, so a job runs
once per interval across all instances (healthchecks' sendalerts claims work the same way).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta

from django.utils import timezone

from credentials import services
from credentials.asyncdb import db
from credentials.models import Credential, GatewaySettings
from gateway import operations
from gateway.kiro import client as kiro_client
from usage import jsonl
from usage.models import UpstreamAttempt, UsageRecord

log = logging.getLogger(__name__)

BALANCE_GAP_SECONDS = 0.4  # spec §3.13: serial with 400 ms gaps
TICK_SECONDS = 5.0  # how often a running loop looks for due jobs


@dataclass(frozen=True, slots=True)
class Job:
    name: str
    interval_seconds: int
    run: Callable[[], Awaitable[str]]


def holder_id() -> str:
    """Name this process in leases: host, pid and a random suffix."""
    return f"{socket.gethostname()[:40]}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


# --- the jobs ---------------------------------------------------------------------------------


def _stale_balance_ids() -> list[int]:
    cutoff = timezone.now() - operations.BALANCE_TTL
    return list(
        Credential.objects.filter(enabled=True)
        .exclude(balance_checked_at__gte=cutoff)
        .order_by("priority", "pk")
        .values_list("pk", flat=True)
    )


async def refresh_balances() -> str:
    """Refresh the cached balance of enabled credentials older than 5 minutes, one by one."""
    ids = await db(_stale_balance_ids)
    ok = failed = 0
    for index, credential_id in enumerate(ids):
        if index:
            await asyncio.sleep(BALANCE_GAP_SECONDS)
        try:
            await operations.check_balance(credential_id=credential_id, force=True)
            ok += 1
        except operations.OperationError as exc:
            failed += 1
            log.warning("balance of credential %s: %s", credential_id, exc)
    return f"{ok} refreshed, {failed} failed"


async def check_proxies() -> str:
    """Probe every enabled pool proxy (spec §7)."""
    checks = await operations.check_proxies()
    healthy = sum(1 for c in checks if c.healthy)
    disabled = sum(1 for c in checks if c.disabled)
    return f"{healthy}/{len(checks)} healthy, {disabled} auto-disabled"


def purge_usage() -> tuple[int, int]:
    """Delete usage records and attempt chains past their retention; return both counts.

    Records (the SQL history team leads query) follow `usage_record_retention_days` (0 keeps
    them); the per-attempt chains are traces and follow `trace_retention_days` (spec §5.4).
    """
    row = GatewaySettings.load()
    now = timezone.now()
    attempts, _ = UpstreamAttempt.objects.filter(
        usage_record__created_at__lt=now - timedelta(days=row.trace_retention_days)
    ).delete()
    records = 0
    if row.usage_record_retention_days:
        records, _ = UsageRecord.objects.filter(
            created_at__lt=now - timedelta(days=row.usage_record_retention_days)
        ).delete()
    return records, attempts


def purge_logs() -> int:
    """Delete JSONL usage logs past `usage_log_retention_days` (spec kiro-ops §5.1)."""
    days = GatewaySettings.load().usage_log_retention_days
    return len(jsonl.purge_old_logs(retention_days=days))


async def retention() -> str:
    """Apply the retention settings: usage records, attempt chains, JSONL log files."""
    records, attempts = await db(purge_usage)
    files = await db(purge_logs)
    return f"{records} old usage records, {attempts} attempt rows, {files} log files deleted"


JOBS: tuple[Job, ...] = (
    Job("balances", 300, refresh_balances),
    Job("proxies", 300, check_proxies),
    Job("retention", 86400, retention),
)


# --- scheduling -------------------------------------------------------------------------------


async def run_job(job: Job, holder: str) -> str | None:
    """Run a job if this process wins its lease; return its result, None when not due."""
    claimed = await db(
        services.job_claim, name=job.name, holder=holder, ttl_seconds=job.interval_seconds
    )
    if not claimed:
        return None
    try:
        result = await job.run()
    except Exception as exc:  # one failing job must not stop the others
        log.exception("job %s failed", job.name)
        result = f"failed: {exc.__class__.__name__}: {exc}"
    await db(services.job_finish, name=job.name, holder=holder, result=result)
    log.info("job %s: %s", job.name, result)
    return result


async def run_due(holder: str, jobs: tuple[Job, ...] = JOBS) -> dict[str, str]:
    """Run every due job once, in order; return the results of those that ran."""
    results = {}
    for job in jobs:
        result = await run_job(job, holder)
        if result is not None:
            results[job.name] = result
    return results


async def run_forever(stop: asyncio.Event, holder: str | None = None) -> None:
    """Run due jobs until `stop` is set; a running job finishes its current step first."""
    holder = holder or holder_id()
    log.info("background jobs started as %s", holder)
    try:
        while not stop.is_set():
            await run_due(holder)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=TICK_SECONDS)
    finally:
        await kiro_client.close_clients()
        log.info("background jobs stopped")


async def run_once(holder: str | None = None) -> dict[str, str]:
    """Run each due job once and close this loop's clients (`run_jobs --once`)."""
    try:
        return await run_due(holder or holder_id())
    finally:
        await kiro_client.close_clients()


SHUTDOWN_GRACE_SECONDS = 10.0


async def serve() -> None:
    """Run the job loop until SIGTERM or SIGINT, then stop cleanly (cancel after a grace)."""
    import signal

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    task = asyncio.create_task(run_forever(stop))
    stopped = asyncio.create_task(stop.wait())
    await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
    try:
        await asyncio.wait_for(task, timeout=SHUTDOWN_GRACE_SECONDS)
    except TimeoutError:
        log.warning("a job did not finish within %s s; cancelled", SHUTDOWN_GRACE_SECONDS)
    finally:
        stopped.cancel()
