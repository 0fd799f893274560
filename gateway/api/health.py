"""Health and metrics: `GET /healthz` for load balancers, `GET /metrics` for Prometheus."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST

from usage.metrics import metrics_render

log = logging.getLogger(__name__)


def _ping_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def _database_status() -> dict[str, object]:
    started = time.perf_counter()
    try:
        _ping_database()
    except Exception as exc:  # any driver error means "down" for a load balancer
        return {"ok": False, "vendor": connection.vendor, "error": exc.__class__.__name__}
    finally:
        connection.close()  # never keep a connection pinned to this thread
    return {
        "ok": True,
        "vendor": connection.vendor,
        "latency_ms": round((time.perf_counter() - started) * 1000, 2),
    }


# A load balancer's probe must not queue behind the requests' database work: the probe runs
# on a thread of its own, at most once per KIRO_HEALTH_CACHE_SECS, and every probe in between
# answers from the last result without leaving the event loop. The health port's listener
# process (gateway.api.health_listener) caches its own probe the same way.
_probe_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="healthz")
_probe_lock = threading.Lock()
_last: tuple[float, dict[str, object]] | None = None
_probing: asyncio.Future | None = None


def _fresh() -> dict[str, object] | None:
    ttl = float(getattr(settings, "KIRO_HEALTH_CACHE_SECS", 2.0))
    last = _last
    if last is not None and time.monotonic() - last[0] < ttl:
        return last[1]
    return None


def _probe_once() -> dict[str, object]:
    """Probe the database unless another thread just did; one probe at a time."""
    global _last
    with _probe_lock:
        cached = _fresh()
        if cached is not None:
            return cached
        status = _database_status()
        _last = (time.monotonic(), status)
        return status


def database_health() -> dict[str, object]:
    """The database's status for a probe, from a thread (blocks for at most one probe)."""
    cached = _fresh()
    return cached if cached is not None else _probe_once()


async def _database() -> dict[str, object]:
    global _probing
    cached = _fresh()
    if cached is not None:
        return cached
    if _probing is None or _probing.done():
        _probing = asyncio.get_running_loop().run_in_executor(_probe_thread, _probe_once)
    return await asyncio.shield(_probing)


# Each worker's heartbeat, for the health port. The port is served by a process of its own
# (`manage.py health_port`, started by `serve`), so that no worker's busy loop, GIL or garbage
# collection delays a probe; it learns that the workers' loops still turn from one file per
# worker in KIRO_HEALTH_BEAT_DIR, touched by the loop every BEAT_SECS.
BEAT_SECS = 0.5
_watched: asyncio.AbstractEventLoop | None = None


def _beat_path() -> Path | None:
    folder = str(getattr(settings, "KIRO_HEALTH_BEAT_DIR", "") or "")
    return Path(folder) / str(os.getpid()) if folder else None


def _heartbeat(loop: asyncio.AbstractEventLoop, path: Path) -> None:
    if loop is not _watched:  # a loop replaced by another (tests) lets its beat die out
        return
    # One utime(2) every half second: microseconds, on a timer, never per request or event.
    try:
        path.touch()
    except OSError:
        log.warning("health: cannot touch the heartbeat file %s", path, exc_info=True)
    loop.call_later(BEAT_SECS, _heartbeat, loop, path)


def watch_event_loop() -> None:
    """From the serving loop (at startup, or its first request): start its heartbeat."""
    global _watched
    loop = asyncio.get_running_loop()
    if loop is _watched:
        return
    path = _beat_path()
    if path is None:
        return
    _watched = loop
    _heartbeat(loop, path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def workers_health(folder: Path, stall_secs: float) -> dict[str, object]:
    """The workers' loops as their heartbeat files tell: ok when at least one worker beats and
    none has stopped for `stall_secs`. Files of workers that exited are removed."""
    now = time.time()
    ages = []
    try:
        entries = list(folder.iterdir())
    except OSError:
        entries = []
    for entry in entries:
        if not entry.name.isdigit():
            continue
        if not _alive(int(entry.name)):
            entry.unlink(missing_ok=True)  # a worker that exited (a new one replaces it)
            continue
        try:
            ages.append(max(0.0, now - entry.stat().st_mtime))
        except OSError:
            continue
    stalled = sum(age >= stall_secs for age in ages)
    return {
        "ok": bool(ages) and stalled == 0,
        "workers": len(ages),
        "stalled": stalled,
        "oldest_beat_ms": round(max(ages) * 1000, 1) if ages else None,
    }


def health_answer(
    database: dict[str, object], workers: dict[str, object] | None = None
) -> tuple[dict[str, object], int]:
    """The probe's JSON body and status, the same on both ports."""
    ok = bool(database["ok"]) and (workers is None or bool(workers["ok"]))
    body: dict[str, object] = {"status": "ok" if ok else "degraded", "database": database}
    if workers is not None:
        body["workers"] = workers
    return body, (200 if ok else 503)


async def healthz(request: HttpRequest) -> JsonResponse:
    """Report liveness and database reachability for load balancers."""
    body, status = health_answer(await _database())
    return JsonResponse(body, status=status)


def _error(status: int, error_type: str, message: str) -> JsonResponse:
    return JsonResponse(
        {"type": "error", "error": {"type": error_type, "message": message}}, status=status
    )


def _bearer(request: HttpRequest) -> str:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


def _render() -> bytes:
    try:
        return metrics_render()
    finally:
        # Postgres: give the pooled connection back at once (STYLE.md, the paperless incident).
        if connection.vendor != "sqlite":
            connection.close()


@require_GET
async def metrics(request: HttpRequest) -> HttpResponse:
    """GET /metrics: Prometheus text format behind `Authorization: Bearer KIRO_METRICS_TOKEN`.

    With no token configured the endpoint does not exist (404), so it is off by default.
    """
    token = str(getattr(settings, "KIRO_METRICS_TOKEN", "") or "")
    if not token:
        return _error(404, "not_found_error", "Not found.")
    presented = _bearer(request)
    if not presented or not secrets.compare_digest(presented.encode(), token.encode()):
        response = _error(401, "authentication_error", "A valid metrics bearer token is needed.")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    # The credential gauge queries the database: render in a worker thread.
    body = await sync_to_async(_render, thread_sensitive=False)()
    return HttpResponse(
        body, content_type=CONTENT_TYPE_LATEST, headers={"Cache-Control": "no-store"}
    )
