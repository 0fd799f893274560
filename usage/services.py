"""Write the one UsageRecord of a client request, with its attempts and the counters it moves."""

from __future__ import annotations

import logging
import re
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from credentials import fastsql
from credentials import services as credential_services
from credentials.limits import Reservation
from credentials.models import ClientKey
from gateway.protocol.errors import ErrorType
from usage import jsonl, live, metrics
from usage.models import UpstreamAttempt, UsageRecord, UsageStatus

SNIPPET_BYTES = 2048  # spec kiro-ops §5.4: error snippets trimmed to 2 KB
# A key's "last used" moves at most this often: one UPDATE less on almost every request.
KEY_LAST_USED_PRECISION = timedelta(seconds=60)
# Postgres refuses NUL in text columns and UTF-8 cannot encode a lone surrogate; a record
# must be writable whatever the client sent (a model name, a path, a quoted value).
log = logging.getLogger(__name__)
_ERROR_TYPES = frozenset(kind.value for kind in ErrorType)
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


@dataclass(slots=True)
class AttemptDraft:
    credential_id: int | None
    endpoint: str
    http_status: int | None
    outcome: str
    error_snippet: str = ""
    duration_ms: int = 0


@dataclass(slots=True)
class UsageDraft:
    """Everything known about a request; filled in as it goes, written once at the end."""

    endpoint: str
    stream: bool = False
    client_key_id: int | None = None
    model_requested: str = ""
    model_sent: str = ""
    credential_id: int | None = None
    status: str = UsageStatus.ERROR
    http_status: int | None = None
    error_type: str = ""
    error_message: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_tokens: int = 0
    cache_read_tokens: int = 0
    credits: float = 0.0
    latency_ms: int = 0
    first_token_ms: int | None = None
    normalizer_rules: list[str] = field(default_factory=list)
    attempts: list[AttemptDraft] = field(default_factory=list)
    reservation: Reservation | None = (
        None  # the key's limits; settled in gateway.api.accounting.write_usage
    )
    trace: bool = True  # the trace_enabled setting: False writes no UpstreamAttempt rows
    span: Any = None  # the request's OpenTelemetry span (credentials.tracing), when tracing
    trace_id: str = ""
    # What the request already knows of its key, so that writing needs no look-up.
    key_name: str = ""
    key_is_system: bool = False
    key_last_used_at: datetime | None = None
    written: bool = (
        False  # set by gateway.api.accounting.write_usage: a request has exactly one record
    )


# The drafts of the request being served, for the ASGI handler's last resort (kiro_site.asgi):
# an exception that escapes a view must still leave exactly one record, with the key known.
_request_drafts: ContextVar[list[UsageDraft] | None] = ContextVar("request_drafts", default=None)


def usage_drafts_collect() -> list[UsageDraft]:
    """Start collecting, in this request's context, the drafts `usage_draft_track` is given."""
    drafts: list[UsageDraft] = []
    _request_drafts.set(drafts)
    return drafts


def usage_draft_track(draft: UsageDraft) -> UsageDraft:
    """Register a new draft with the request's collector, if one is running; return it."""
    drafts = _request_drafts.get()
    if drafts is not None:
        drafts.append(draft)
    return draft


def storable(text: str, limit: int | None = None) -> str:
    """Cut text to `limit` characters and replace what no column or log line can hold."""
    return _UNSTORABLE.sub("\ufffd", text if limit is None else text[:limit])


def trim_snippet(text: str) -> str:
    """Trim an upstream body to 2 KB of UTF-8 with a marker (spec kiro-ops §5.4)."""
    raw = text.encode("utf-8", errors="replace")
    if len(raw) <= SNIPPET_BYTES:
        return text
    return raw[:SNIPPET_BYTES].decode("utf-8", errors="ignore") + "…(truncated)"


@transaction.atomic
def usage_record_write(*, draft: UsageDraft) -> int:
    """Store the request's record and attempts; move credential and key counters. Return id.

    The log line, metrics and live feed follow the commit."""
    record = usage_record_store(draft=draft)
    attempts = list(draft.attempts)
    # After commit only: a rolled-back write must leave no log line, count or live row.
    transaction.on_commit(lambda: _after_write(record, attempts))
    return record.pk


def documented_error(error_type: str, message: str) -> tuple[str, str]:
    """Return the record's error type as a documented `ErrorType` value, and its message.

    A value outside the enum is a bug, but the record must still be written: it is stored as
    `unknown`, with the value at the end of the message, and logged."""
    if not error_type or error_type in _ERROR_TYPES:
        return str(error_type), message
    log.error("undocumented usage error_type %r stored as 'unknown'", error_type)
    return ErrorType.UNKNOWN.value, f"{message} (error type: {storable(error_type, 64)})".strip()


def usage_record_store(*, draft: UsageDraft) -> UsageRecord:
    """Insert the record and its attempts and move the counters, in the caller's transaction.

    No side effects: the caller runs them after the commit (`usage_record_write` does).
    Every request runs this: the statements are hand-built (credentials/fastsql.py)."""
    now = timezone.now()
    error_type, error_message = documented_error(draft.error_type, draft.error_message)
    values = {
        "created_at": now,
        "client_key_id": draft.client_key_id,
        "endpoint": storable(draft.endpoint, 64),
        "model_requested": storable(draft.model_requested, 200),
        "model_sent": storable(draft.model_sent, 200),
        "credential_id": draft.credential_id,
        "status": draft.status,
        "http_status": draft.http_status,
        "error_type": error_type,
        "error_message": storable(error_message, 4000),
        "stream": draft.stream,
        "input_tokens": max(0, draft.input_tokens),
        "output_tokens": max(0, draft.output_tokens),
        "cache_creation_tokens": max(0, draft.cache_creation_tokens),
        "cache_read_tokens": max(0, draft.cache_read_tokens),
        "credits": max(0.0, draft.credits),
        "latency_ms": max(0, draft.latency_ms),
        "first_token_ms": draft.first_token_ms,
        "attempt_count": len(draft.attempts),
        "normalizer_rules": list(draft.normalizer_rules),
        "trace_id": draft.trace_id,
    }
    record = UsageRecord(pk=fastsql.insert(UsageRecord, values), **values)
    record._state.adding = False
    if draft.attempts and draft.trace:
        fastsql.insert_many(
            UpstreamAttempt,
            [
                {
                    "usage_record_id": record.pk,
                    "attempt": index,
                    "credential_id": attempt.credential_id,
                    "endpoint": storable(attempt.endpoint, 8),
                    "http_status": attempt.http_status,
                    "outcome": attempt.outcome,
                    "error_snippet": storable(trim_snippet(attempt.error_snippet)),
                    "duration_ms": attempt.duration_ms,
                }
                for index, attempt in enumerate(draft.attempts)
            ],
        )
    served = [a for a in draft.attempts if a.outcome == "success" and a.credential_id]
    if served:
        # spec kiro-ops §3.5: success is the response headers arriving, even if the stream
        # later broke; counted here so that no database work happens while bytes flow.
        credential_services.credential_report_success(
            credential_id=served[-1].credential_id, model=draft.model_sent or None
        )
    if draft.client_key_id is not None:
        seen = draft.key_last_used_at
        if seen is None or now - seen >= KEY_LAST_USED_PRECISION or not draft.key_name:
            ClientKey.objects.filter(pk=draft.client_key_id).update(last_used_at=now)
        if draft.key_name:
            # Known from authentication: the log line and live feed need no look-up.
            record.client_key = ClientKey(
                pk=draft.client_key_id, name=draft.key_name, is_system=draft.key_is_system
            )
    return record


def after_commit_local(record: UsageRecord, attempts: list[AttemptDraft]) -> None:
    """Append the JSONL line and count the metrics of a committed record (neither raises)."""
    jsonl.append_record(record)
    metrics.observe_record(record, attempts)


def _after_write(record: UsageRecord, attempts: list[AttemptDraft]) -> None:
    """Append the JSONL line, count the metrics, publish to the live feed (none raise)."""
    after_commit_local(record, attempts)
    live.publish_record(record)
