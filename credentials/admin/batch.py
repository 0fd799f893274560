"""Console pages: the batch import, as a page and as a stream of one event per item (§6.3)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from django.contrib.admin.models import ADDITION, DELETION, LogEntry
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import (
    HttpRequest,
    HttpResponse,
    JsonResponse,
    StreamingHttpResponse,
)
from django.template.response import TemplateResponse
from django.urls import path
from django.utils.decorators import method_decorator
from django.views.decorators.debug import sensitive_post_parameters

from credentials import (
    batch_import,
    operations,
    services,
)
from credentials.admin.common import CredentialPageBase, usage_text
from credentials.asyncdb import db
from credentials.models import (
    Credential,
)

log = logging.getLogger(__name__)
BATCH_IMPORT_TEMPLATE = "admin/credentials/credential/batch_import.html"


class BatchImportPages(CredentialPageBase):
    """batch_import_view, batch_import_stream_view: mixed into CredentialAdmin."""

    def batch_import_urls(self) -> list:
        """The batch import pages' URLs (routed by CredentialAdmin.get_urls)."""
        wrap = self.admin_site.admin_view
        return [
            path(
                "batch-import/",
                wrap(self.batch_import_view),
                name="credentials_credential_batch_import",
            ),
            path(
                "batch-import/stream/",
                wrap(self.batch_import_stream_view),
                name="credentials_credential_batch_import_stream",
            ),
        ]

    @method_decorator(sensitive_post_parameters())
    def batch_import_view(self, request: HttpRequest) -> HttpResponse:
        """Import pasted/uploaded credential arrays or KAM exports; report each item (#118-#123)."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        context = self.ops_context(request, None, "Batch import accounts")
        if request.method != "POST":
            return TemplateResponse(request, BATCH_IMPORT_TEMPLATE, context)
        texts = batch_texts(request)
        if not texts:
            context["error"] = "Paste JSON or choose at least one file."
            return TemplateResponse(request, BATCH_IMPORT_TEMPLATE, context)
        outcomes = services.credential_batch_import(
            items=batch_import.parse_batch(texts),
            include_errored=bool(request.POST.get("include_errored")),
        )
        created = [o.credential_id for o in outcomes if o.credential_id]
        if created:
            LogEntry.objects.log_actions(
                user_id=request.user.pk,
                queryset=Credential.objects.filter(pk__in=created),
                action_flag=ADDITION,
                change_message="Batch imported (admin)",
            )
        if created and request.POST.get("verify"):
            checks = operations.run_sync(operations.verify, credential_ids=created)
            failed = [c.credential_id for c in checks if not c.ok]
            if failed:
                self.log_deletions(request, Credential.objects.filter(pk__in=failed))
                services.credential_delete(credential_ids=failed)
            outcomes = batch_import.apply_verification(
                outcomes, {c.credential_id: (c.ok, c.detail) for c in checks}
            )
        context.update(outcomes=outcomes, summary=batch_import.summarise(outcomes))
        return TemplateResponse(request, BATCH_IMPORT_TEMPLATE, context)

    @method_decorator(sensitive_post_parameters())
    def batch_import_stream_view(self, request: HttpRequest) -> HttpResponse:
        """Import like `batch_import_view`, streaming one SSE event per item (spec §6.3)."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        if request.method != "POST":
            return HttpResponse(status=405)
        texts = batch_texts(request)
        if not texts:
            return JsonResponse({"error": "Paste JSON or choose at least one file."}, status=400)
        events = batch_import_events(
            items=batch_import.parse_batch(texts),
            include_errored=bool(request.POST.get("include_errored")),
            verify=bool(request.POST.get("verify")),
            user_id=request.user.pk,
        )
        response = StreamingHttpResponse(events, content_type="text/event-stream")
        response["Cache-Control"] = "no-cache"
        response["X-Accel-Buffering"] = "no"
        return response


def batch_texts(request: HttpRequest) -> list[tuple[str, str]]:
    """Return the pasted JSON and each uploaded file as `(name, text)` pairs."""
    pasted = request.POST.get("text", "")
    texts = [("pasted JSON", pasted)] if pasted.strip() else []
    for upload in request.FILES.getlist("files"):
        texts.append((upload.name or "upload", upload.read().decode("utf-8-sig", "replace")))
    return texts


# --- streamed batch import (spec kiro-ops §6.3) ------------------------------------------------

_SSE_STATUS = {"imported": "imported", "verified": "verified", "duplicate": "duplicate"}


def _import_item_logged(
    run: services.BatchImportRun, item: batch_import.BatchItem, user_id: int
) -> batch_import.BatchOutcome:
    """Import one item and record the addition in the admin history, in one transaction."""
    with transaction.atomic():
        outcome = services.credential_batch_import_item(run=run, item=item)
        if outcome.credential_id:
            LogEntry.objects.log_actions(
                user_id=user_id,
                queryset=Credential.objects.filter(pk=outcome.credential_id),
                action_flag=ADDITION,
                change_message="Batch imported (admin)",
            )
    return outcome


def _roll_back_logged(credential_id: int, user_id: int) -> None:
    """Delete an imported credential that failed verification, recording the deletion."""
    with transaction.atomic():
        LogEntry.objects.log_actions(
            user_id=user_id,
            queryset=Credential.objects.filter(pk=credential_id),
            action_flag=DELETION,
            change_message="Batch import: verification failed, rolled back (admin)",
        )
        services.credential_delete(credential_ids=[credential_id])


async def _import_and_verify(
    run: services.BatchImportRun, item: batch_import.BatchItem, *, verify: bool, user_id: int
) -> dict[str, Any]:
    """Import one item (and verify it, rolling back a failure); return its event."""
    outcome = await db(_import_item_logged, run, item, user_id)
    event: dict[str, Any] = {"index": item.index}
    if verify and outcome.outcome == "imported" and outcome.credential_id:
        pk = outcome.credential_id
        try:
            result = await operations.check_balance(credential_id=pk, force=True)
        except operations.OperationError as exc:
            await db(_roll_back_logged, pk, user_id)
            outcome = batch_import.apply_verification([outcome], {pk: (False, str(exc))})[0]
            event["rolledBack"] = True
        else:
            outcome = batch_import.apply_verification([outcome], {pk: (True, "")})[0]
            event["usage"] = usage_text(result.balance)
            event["subscription"] = result.balance.get("subscription_title") or None
    event["status"] = _SSE_STATUS.get(outcome.outcome, "failed")
    if outcome.credential_id:
        event["credentialId"] = outcome.credential_id
    if outcome.label:
        event["email"] = outcome.label
    if event["status"] in ("failed", "duplicate") and outcome.detail:
        event["error"] = f"{outcome.outcome}: {outcome.detail}"
    return event


_finishing: set[asyncio.Task] = set()  # items whose client left mid-way; kept until done


async def batch_import_events(
    *,
    items: list[batch_import.BatchItem],
    include_errored: bool,
    verify: bool,
    user_id: int,
) -> AsyncIterator[str]:
    """Import items one at a time, yielding one `data: <json>` event each, then a summary.

    An async generator: under ASGI a sync iterator would be buffered whole. Items run in
    order (in-batch duplicates depend on it). When the client goes away (spec §6.3 "stop"),
    the generator is closed at a `yield` or cancelled while an item runs: the item in
    progress is shielded and still finishes (verified or rolled back, never half-done), no
    new item starts, the finished ones are kept, and no summary is sent.
    """
    summary = dict.fromkeys(
        ("total", "imported", "verified", "duplicate", "failed", "rolledBack"), 0
    )
    run = await db(services.credential_batch_import_start, include_errored=include_errored)
    done = 0
    try:
        for item in items:
            task = asyncio.ensure_future(
                _import_and_verify(run, item, verify=verify, user_id=user_id)
            )
            _finishing.add(task)
            task.add_done_callback(_finishing.discard)
            event = await asyncio.shield(task)
            summary["total"] += 1
            summary[event["status"]] += 1
            summary["rolledBack"] += 1 if event.get("rolledBack") else 0
            done += 1
            yield f"data: {json.dumps(event)}\n\n"
    except (GeneratorExit, asyncio.CancelledError):
        log.info("Batch import stopped by the client after %s of %s item(s)", done, len(items))
        raise
    yield f"data: {json.dumps({'status': 'summary', 'summary': summary})}\n\n"
