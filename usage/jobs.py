"""The usage app's background job: retention of usage records, attempt chains and JSONL logs.

Registered with the job loop (credentials.jobs) by `UsageConfig.ready`."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from credentials.asyncdb import db
from credentials.models import GatewaySettings
from usage import jsonl
from usage.models import UpstreamAttempt, UsageRecord


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
