"""Health and metrics: `GET /healthz` for load balancers, `GET /metrics` for Prometheus."""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST

from usage.metrics import metrics_render


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
# (gateway.api.health_listener) shares the same cached result from its own threads.
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


# The event loop's heartbeat, for the health port: a loop that stops turning (a blocking call,
# a deadlock) makes the listener answer 503 although its own thread still runs.
_beat: float | None = None
_watched: asyncio.AbstractEventLoop | None = None
BEAT_SECS = 0.5


def _heartbeat(loop: asyncio.AbstractEventLoop) -> None:
    global _beat
    if loop is _watched:  # a loop replaced by another (tests) lets its beat die out
        _beat = time.monotonic()
        loop.call_later(BEAT_SECS, _heartbeat, loop)


def watch_event_loop() -> None:
    """From the serving loop: start its heartbeat (once per loop)."""
    global _watched
    loop = asyncio.get_running_loop()
    if loop is not _watched:
        _watched = loop
        _heartbeat(loop)


def event_loop_health() -> dict[str, object]:
    """Whether the serving loop turned recently (`None` age: no request served yet)."""
    stall = float(getattr(settings, "KIRO_HEALTH_LOOP_STALL_SECS", 10.0))
    beat = _beat
    if beat is None:
        return {"ok": True, "age_ms": None}
    age = time.monotonic() - beat
    return {"ok": age < stall, "age_ms": round(age * 1000, 1)}


def health_answer(database: dict[str, object], loop: dict[str, object] | None = None):
    """The probe's JSON body and status, the same on both ports."""
    ok = bool(database["ok"]) and (loop is None or bool(loop["ok"]))
    body: dict[str, object] = {"status": "ok" if ok else "degraded", "database": database}
    if loop is not None:
        body["event_loop"] = loop
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
