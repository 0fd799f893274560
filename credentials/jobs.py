"""Background jobs: balance refresh, proxy health, and what other apps register (§3.13).

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

from django.utils import timezone

from credentials import operations, services
from credentials.asyncdb import db
from credentials.models import Credential
from gateway.kiro import client as kiro_client

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


_REGISTRY: dict[str, Job] = {}


def register(job: Job) -> None:
    """Add a job to the loop (the usage app registers its retention job from its ready())."""
    _REGISTRY[job.name] = job


def registered() -> tuple[Job, ...]:
    """Return the registered jobs, in registration order."""
    return tuple(_REGISTRY.values())


register(Job("balances", 300, refresh_balances))
register(Job("proxies", 300, check_proxies))


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


async def run_due(holder: str, jobs: tuple[Job, ...] | None = None) -> dict[str, str]:
    """Run every due job once, in order; return the results of those that ran."""
    results = {}
    for job in registered() if jobs is None else jobs:
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
