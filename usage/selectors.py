"""Reads over usage records."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from usage import jsonl
from usage.models import UsageRecord

EXPORT_CHUNK_SIZE = 2000


def usage_rows(*, since: datetime, until: datetime | None = None) -> Iterator[dict[str, Any]]:
    """Yield the §5.1 log objects of the logged records in [since, until), oldest first.

    Streams with `.iterator()` (a server-side cursor on Postgres), so memory stays flat
    whatever the range.
    """
    records = UsageRecord.objects.filter(jsonl.logged_filter(), created_at__gte=since)
    if until is not None:
        records = records.filter(created_at__lt=until)
    rows = records.order_by("created_at", "id").values(*jsonl.ROW_FIELDS)
    for row in rows.iterator(chunk_size=EXPORT_CHUNK_SIZE):
        yield jsonl.log_entry(row)
