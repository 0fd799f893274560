"""The JSONL request log of ZyphrZero's kiro.rs (spec kiro-ops §5.1), written beside the database.

Files are `DATA_DIR/usage/usage_log.YYYY-MM-DD.jsonl`, one per day of the server's local date
(Django's TIME_ZONE, which Django also makes the process time zone). They sit in a `usage/`
subdirectory so that they do not mix with the SQLite file and the secret key; copy them into a
kiro.rs data directory as they are. The file of a line is chosen by the record's own end time,
so a request ending at 23:59:59.9 lands in that day's file and the log rolls over by itself.

Every line is appended by opening the file in append mode, taking an exclusive `flock` and
writing the line with one write: several threads or processes on one host can share a file,
and a reader never sees half a line. With several hosts each host keeps its own files; the
database is the complete record (`manage.py export_usage` writes the same lines from it).

What is logged follows §5.1: the messages-shaped endpoints only (count_tokens and /v1/models
are not); `interrupted` and `rejected` records are logged as `error` (Z logs early failures such
as conversion errors); requests refused for a bad client key (401) are not logged, because Z's
auth middleware refuses them before its handler and there is no key to attribute them to, nor
are those refused for their method (405), which Z's router answers without calling a handler.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from credentials.models import ClientKey
from usage.models import UsageRecord, UsageStatus

log = logging.getLogger(__name__)

LOG_SUBDIR = "usage"
FILE_PREFIX = "usage_log."
FILE_SUFFIX = ".jsonl"
_FILE_NAME = re.compile(r"^usage_log\.(\d{4}-\d{2}-\d{2})\.jsonl$")

# spec kiro-ops §5.1: written for these; count_tokens and /v1/models are not logged.
LOGGED_ENDPOINTS = ("/v1/messages", "/cc/v1/messages", "/v1/chat/completions", "/v1/responses")
# Refused before Z's handler runs: a bad key (auth middleware), a wrong method (the router).
UNLOGGED_REFUSALS = (401, 405)

# The UsageRecord values a log line is made of (also the `.values()` of the export selector).
ROW_FIELDS = (
    "created_at",
    "client_key_id",
    "client_key__is_system",
    "credential_id",
    "model_requested",
    "input_tokens",
    "output_tokens",
    "cache_creation_tokens",
    "cache_read_tokens",
    "credits",
    "latency_ms",
    "status",
)

# spec kiro-ops §5.1 field names, in Z's order.
LINE_FIELDS = (
    "ts",
    "keyId",
    "credentialId",
    "model",
    "inputTokens",
    "outputTokens",
    "cacheCreationTokens",
    "cacheReadTokens",
    "credits",
    "durationMs",
    "status",
)


def is_logged(*, endpoint: str, status: str, http_status: int | None) -> bool:
    """Tell whether a request of this endpoint and outcome belongs in the log (spec §5.1)."""
    if endpoint not in LOGGED_ENDPOINTS:
        return False
    return not (status == UsageStatus.REJECTED and http_status in UNLOGGED_REFUSALS)


def logged_filter() -> Q:
    """Return the queryset filter equivalent to `is_logged`."""
    return Q(endpoint__in=LOGGED_ENDPOINTS) & ~Q(
        status=UsageStatus.REJECTED, http_status__in=UNLOGGED_REFUSALS
    )


def format_ts(moment: datetime) -> str:
    """Format a time as Z does: RFC 3339 in UTC with a nine-digit fraction and `+00:00`."""
    utc = moment.astimezone(UTC)
    return f"{utc:%Y-%m-%dT%H:%M:%S}.{utc.microsecond:06d}000+00:00"


def log_entry(row: Mapping[str, Any]) -> dict[str, Any]:
    """Turn the ROW_FIELDS values of one record into a §5.1 log object (camelCase, Z's order)."""
    key_id = row["client_key_id"]
    return {
        "ts": format_ts(row["created_at"]),
        # spec §5.1: keyId 0 is the system key (config.json apiKey); also used for no key.
        "keyId": 0 if key_id is None or row["client_key__is_system"] else int(key_id),
        "credentialId": int(row["credential_id"] or 0),
        "model": row["model_requested"],
        "inputTokens": int(row["input_tokens"]),
        "outputTokens": int(row["output_tokens"]),
        "cacheCreationTokens": int(row["cache_creation_tokens"]),
        "cacheReadTokens": int(row["cache_read_tokens"]),
        "credits": max(0.0, float(row["credits"])),
        "durationMs": int(row["latency_ms"]),
        # spec §5.1: only success | error; interrupted streams count as errors.
        "status": "success" if row["status"] == UsageStatus.SUCCESS else "error",
    }


def dump_line(entry: Mapping[str, Any]) -> str:
    """Serialize a log object as one compact JSON line, newline included."""
    return json.dumps(entry, ensure_ascii=False, separators=(",", ":")) + "\n"


def log_dir() -> Path:
    """Return the directory of the daily files (read from settings at call time)."""
    return Path(settings.DATA_DIR) / LOG_SUBDIR


def log_path(day: date) -> Path:
    """Return the file of one local day."""
    return log_dir() / f"{FILE_PREFIX}{day.isoformat()}{FILE_SUFFIX}"


def _record_row(record: UsageRecord) -> dict[str, Any]:
    is_system = False
    if record.client_key_id is not None:
        if UsageRecord._meta.get_field("client_key").is_cached(record):
            is_system = bool(record.client_key and record.client_key.is_system)
        else:
            is_system = ClientKey.objects.filter(pk=record.client_key_id, is_system=True).exists()
    row = {name: getattr(record, name) for name in ROW_FIELDS if "__" not in name}
    row["client_key__is_system"] = is_system
    return row


def _append(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        # One line may exceed PIPE_BUF, so O_APPEND alone does not keep lines whole.
        fcntl.flock(fd, fcntl.LOCK_EX)
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
    finally:
        os.close(fd)  # closing releases the lock


def append_record(record: UsageRecord) -> None:
    """Append one finished request to its day's file; log and carry on on any failure."""
    try:
        if not is_logged(
            endpoint=record.endpoint, status=record.status, http_status=record.http_status
        ):
            return
        line = dump_line(log_entry(_record_row(record)))
        directory = log_dir()
        directory.mkdir(parents=True, exist_ok=True)
        _append(log_path(timezone.localdate(record.created_at)), line.encode("utf-8"))
    except Exception:  # the log is a side channel: never fail the request over it
        log.exception("could not append usage record %s to the JSONL log", record.pk)


def purge_old_logs(*, retention_days: int, today: date | None = None) -> list[Path]:
    """Delete daily files dated before today - retention_days (at least 1); return them."""
    today = today or timezone.localdate()
    cutoff = today - timedelta(days=max(1, retention_days))
    directory = log_dir()
    if not directory.is_dir():
        return []
    removed = []
    for path in sorted(directory.iterdir()):
        match = _FILE_NAME.match(path.name)
        if match is None:
            continue
        try:
            day = date.fromisoformat(match.group(1))
        except ValueError:
            continue
        if day < cutoff:
            try:
                path.unlink()
            except FileNotFoundError:
                continue  # another process purged it first
            removed.append(path)
    return removed
