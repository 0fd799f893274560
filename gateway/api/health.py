"""Health and metrics: `GET /healthz` for load balancers, `GET /metrics` for Prometheus."""

from __future__ import annotations

import asyncio
import secrets
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
# answers from the last result without leaving the event loop.
_probe_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="healthz")
_last: tuple[float, dict[str, object]] | None = None
_probing: asyncio.Future | None = None


async def _database() -> dict[str, object]:
    global _last, _probing
    now = time.monotonic()
    ttl = float(getattr(settings, "KIRO_HEALTH_CACHE_SECS", 2.0))
    if _last is not None and now - _last[0] < ttl:
        return _last[1]
    if _probing is None or _probing.done():
        _probing = asyncio.get_running_loop().run_in_executor(_probe_thread, _database_status)
    status = await asyncio.shield(_probing)
    _last = (time.monotonic(), status)
    return status


async def healthz(request: HttpRequest) -> JsonResponse:
    """Report liveness and database reachability for load balancers."""
    database = await _database()
    status = 200 if database["ok"] else 503
    return JsonResponse(
        {"status": "ok" if database["ok"] else "degraded", "database": database}, status=status
    )


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
