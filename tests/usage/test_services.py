"""usage.services: a record is writable whatever the client sent; drafts a request created."""

from __future__ import annotations

import contextvars
import json
from pathlib import Path

import pytest

from usage.models import UpstreamAttempt, UsageRecord, UsageStatus
from usage.services import (
    AttemptDraft,
    UsageDraft,
    storable,
    usage_draft_track,
    usage_drafts_collect,
    usage_record_write,
)

UNSTORABLE = "a\x00b\ud800c\udfff"  # Postgres refuses the NUL, UTF-8 the lone surrogates


@pytest.mark.django_db(transaction=True)
def test_a_record_with_nuls_and_lone_surrogates_is_written_and_logged(settings, tmp_path: Path):
    settings.DATA_DIR = tmp_path
    draft = UsageDraft(
        endpoint="/v1/messages",
        model_requested=UNSTORABLE,
        model_sent=UNSTORABLE,
        status=UsageStatus.REJECTED,
        http_status=400,
        error_type="invalid_request",
        error_message=f"model: {UNSTORABLE}",
        attempts=[AttemptDraft(None, "ide", 400, "bad_request", error_snippet=UNSTORABLE)],
    )

    usage_record_write(draft=draft)

    record = UsageRecord.objects.get()
    assert record.model_requested == record.model_sent == "a\ufffdb\ufffdc\ufffd"
    assert record.error_message == "model: a\ufffdb\ufffdc\ufffd"
    assert UpstreamAttempt.objects.get().error_snippet == "a\ufffdb\ufffdc\ufffd"
    (log,) = (tmp_path / "usage").glob("*.jsonl")
    assert json.loads(log.read_text())["model"] == "a\ufffdb\ufffdc\ufffd"


def test_storable_cuts_to_the_limit_before_replacing():
    assert storable("ab\x00cd", 3) == "ab\ufffd"
    assert storable("plain") == "plain"
    assert storable("😀", 10) == "😀"


def test_drafts_are_collected_only_where_a_collector_runs():
    outside = usage_draft_track(UsageDraft(endpoint="/v1/messages"))

    def request() -> list[UsageDraft]:
        drafts = usage_drafts_collect()
        usage_draft_track(UsageDraft(endpoint="/v1/models"))
        return drafts

    drafts = contextvars.copy_context().run(request)

    assert [d.endpoint for d in drafts] == ["/v1/models"]
    assert outside not in drafts
