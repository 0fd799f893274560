"""Thin async views of the client-facing edge."""

from __future__ import annotations

import time

from asgiref.sync import sync_to_async
from django.db import connection
from django.http import HttpRequest, JsonResponse


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


async def healthz(request: HttpRequest) -> JsonResponse:
    """Report liveness and database reachability for load balancers."""
    database = await sync_to_async(_database_status, thread_sensitive=False)()
    status = 200 if database["ok"] else 503
    return JsonResponse(
        {"status": "ok" if database["ok"] else "degraded", "database": database}, status=status
    )
