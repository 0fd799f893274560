"""Run database work from async code without pinning pooled connections to worker threads."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from django.db import connection

T = TypeVar("T")


def _closing(fn: Callable[..., T]) -> Callable[..., T]:
    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> T:
        try:
            return fn(*args, **kwargs)
        finally:
            # Postgres: hand the connection back to Django's pool at once, so idle worker
            # threads never hold pool slots (the paperless-ngx incident in STYLE.md). SQLite
            # keeps its cheap per-thread connection.
            if connection.vendor != "sqlite":
                connection.close()

    return run


async def db(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """Call a sync service or selector in a worker thread and return its result."""
    return await sync_to_async(_closing(fn), thread_sensitive=False)(*args, **kwargs)
