"""Writing a request's one usage record from the edge (and settling its key's limits).

Every client request ends here exactly once: `write_usage` for answers that went upstream,
`write_local` for refusals and local answers. The write runs in a worker thread and survives
the cancellation of a client that left."""

from __future__ import annotations

import asyncio
import logging
import time

from django.db import transaction

from credentials import tracing
from credentials.asyncdb import db
from credentials.limits import Reservation, limit_settle
from usage import live
from usage.models import UsageRecord, UsageStatus
from usage.services import UsageDraft, after_commit_local, usage_record_store

log = logging.getLogger(__name__)


def ms_since(since: float) -> int:
    """Return the milliseconds since the monotonic time `since`."""
    return int((time.monotonic() - since) * 1000)


def store_usage(draft: UsageDraft, reservation: Reservation | None) -> UsageRecord:
    """Write the record, its attempts, the counters and the key's limits in one transaction.

    A limited key is settled first (its lock comes before anything else touches the key,
    limits.limit_settle); an unlimited key's increments come last, so that the window rows
    are locked for the shortest time. If settling fails, the record is written alone: a
    limits failure must not lose the record."""
    cost = draft.input_tokens + draft.output_tokens
    cost += draft.cache_creation_tokens + draft.cache_read_tokens
    settle_first = reservation is not None and reservation.admission_id is not None
    settle = {
        "tokens": cost,
        "credits": draft.credits,
        # The lifetime "in" figure is the whole prompt: cached parts included.
        "input_tokens": cost - draft.output_tokens,
        "output_tokens": draft.output_tokens,
    }
    try:
        with transaction.atomic():
            if settle_first:
                limit_settle(reservation=reservation, **settle)
            record = usage_record_store(draft=draft)
            if reservation is not None and not settle_first:
                limit_settle(reservation=reservation, **settle)
    except Exception:
        if reservation is None:
            raise
        log.exception("could not settle the client key's limits; writing the record alone")
        with transaction.atomic():
            record = usage_record_store(draft=draft)
    after_commit_local(record, draft.attempts)  # the JSONL line and the metrics
    return record


async def write_usage(draft: UsageDraft) -> None:
    """Write the usage record, shielded from the cancellation of a disconnecting client.

    One trip to a worker thread; the live feed is published from the event loop. A draft is
    written once: a second call (an error path after the record) does nothing."""
    if draft.written:
        return
    draft.written = True
    if draft.span is not None:
        _finish_span(draft)
    reservation, draft.reservation = draft.reservation, None  # settled exactly once
    task = asyncio.ensure_future(db(store_usage, draft, reservation))
    try:
        record = await asyncio.shield(task)
    except asyncio.CancelledError:
        try:
            record = await task  # finish the write, then let the cancellation go on
        except Exception:
            log.exception("could not write the usage record")
        else:
            live.publish_soon(record)
        raise
    except Exception:
        log.exception("could not write the usage record")
        return
    live.publish_soon(record)


def _finish_span(draft: UsageDraft) -> None:
    """End the request's span with what its record says (credentials.tracing)."""
    tracing.finish(
        draft.span,
        {
            "endpoint": draft.endpoint,
            "client_key": draft.key_name,
            "model.requested": draft.model_requested,
            "model.sent": draft.model_sent,
            "status": draft.status,
            "http.status_code": draft.http_status,
            "error.type": draft.error_type or None,
            "tokens.input": draft.input_tokens,
            "tokens.output": draft.output_tokens,
            "tokens.cache_creation": draft.cache_creation_tokens,
            "tokens.cache_read": draft.cache_read_tokens,
            "credits": draft.credits,
            "time_to_first_token_ms": draft.first_token_ms,
            "attempts": len(draft.attempts),
        },
        error=draft.status != UsageStatus.SUCCESS,
    )


async def write_local(
    draft: UsageDraft, *, status: int, started: float, error_type: str = "", message: str = ""
) -> None:
    """Record a request answered without streaming upstream (local answers, refusals)."""
    if status < 300:
        draft.status = UsageStatus.SUCCESS
    else:
        draft.status = UsageStatus.REJECTED if status < 500 else UsageStatus.ERROR
    draft.http_status = status
    draft.error_type = error_type
    draft.error_message = message
    draft.latency_ms = ms_since(started)
    await write_usage(draft)
