"""Publish finished usage records to the live feed of the dashboard."""

from __future__ import annotations

import asyncio
import logging
from typing import TypedDict

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from usage.models import UsageRecord

logger = logging.getLogger(__name__)

GROUP = "usage.live"
EVENT_TYPE = "usage.record"


class LiveRecord(TypedDict):
    id: int
    time: str
    endpoint: str
    model: str
    status: str
    http_status: int | None
    error_type: str
    stream: bool
    input_tokens: int
    output_tokens: int
    credits: float
    latency_ms: int
    credential_id: int | None
    key_name: str


def live_record(record: UsageRecord, *, lookup: bool = True) -> LiveRecord:
    """Return the compact, secret-free view of a record that the feed sends.

    With `lookup=False` (on the event loop) the key's name is only taken if it is attached."""
    key_name = ""
    cached = UsageRecord._meta.get_field("client_key").is_cached(record)
    if record.client_key_id is not None and (lookup or cached):
        # The name only: the key's prefix and hash stay in the admin.
        key_name = record.client_key.name if record.client_key else ""
    return {
        "id": record.pk,
        "time": record.created_at.isoformat(),
        "endpoint": record.endpoint,
        "model": record.model_requested,
        "status": record.status,
        "http_status": record.http_status,
        "error_type": record.error_type,
        "stream": record.stream,
        "input_tokens": record.input_tokens,
        "output_tokens": record.output_tokens,
        "credits": round(record.credits, 4),
        "latency_ms": record.latency_ms,
        "credential_id": record.credential_id,
        "key_name": key_name,
    }


_pending: set[asyncio.Task] = set()


def publish_soon(record: UsageRecord) -> None:
    """From the event loop: send a record to the live feeds in the background (never raises).

    The record's key must be attached already (usage_record_store does), so that building
    the message needs no query on the loop."""
    try:
        layer = get_channel_layer()
        if layer is None:
            return
        message = {"type": EVENT_TYPE, "record": live_record(record, lookup=False)}
        task = asyncio.get_running_loop().create_task(_send(layer, message, record.pk))
    except Exception:
        logger.warning("live feed: could not publish usage record %s", record.pk, exc_info=True)
        return
    _pending.add(task)  # keep a reference until it is done
    task.add_done_callback(_pending.discard)


async def _send(layer, message: dict, record_id: int) -> None:
    try:
        await layer.group_send(GROUP, message)
    except Exception:
        logger.warning("live feed: could not publish usage record %s", record_id, exc_info=True)


def publish_record(record: UsageRecord) -> None:
    """Send a record to every open live feed; never raise, the request is already answered."""
    try:
        layer = get_channel_layer()
        if layer is None:
            return
        async_to_sync(layer.group_send)(GROUP, {"type": EVENT_TYPE, "record": live_record(record)})
    except Exception:
        # A full or unreachable channel layer must not fail the usage write that called us.
        logger.warning("live feed: could not publish usage record %s", record.pk, exc_info=True)
