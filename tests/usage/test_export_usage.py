"""manage.py export_usage: the log's JSONL lines or CSV, from the database."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from tests.factories import ClientKeyFactory, CredentialFactory
from tests.usage.factories import UsageRecordFactory
from usage import jsonl
from usage.models import UsageStatus

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _local_time(settings, tmp_path: Path) -> None:
    settings.DATA_DIR = tmp_path
    settings.TIME_ZONE = "UTC"


def export(*args: str) -> str:
    out = io.StringIO()
    call_command("export_usage", *args, stdout=out)
    return out.getvalue()


def at(day: int, hour: int = 12) -> datetime:
    return datetime(2026, 11, day, hour, tzinfo=UTC)


def test_jsonl_lines_are_identical_to_the_log(tmp_path: Path) -> None:
    key = ClientKeyFactory()
    credential = CredentialFactory()
    records = [
        UsageRecordFactory(created_at=at(1, 9), client_key=key, credential=credential),
        UsageRecordFactory(created_at=at(1, 10), failed=True, client_key=key),
        UsageRecordFactory(created_at=at(1, 11), status=UsageStatus.INTERRUPTED),
    ]
    for record in records:
        jsonl.append_record(record)

    output = export("--since", "2026-11-01", "--format", "jsonl")

    assert output == (tmp_path / "usage" / "usage_log.2026-11-01.jsonl").read_text()
    assert [json.loads(line)["status"] for line in output.splitlines()] == [
        "success",
        "error",
        "error",
    ]


def test_jsonl_is_the_default_format() -> None:
    UsageRecordFactory(created_at=at(2))

    (line,) = export("--since", "2026-11-01").splitlines()

    assert json.loads(line)["ts"] == "2026-11-02T12:00:00.000000000+00:00"


def test_csv_has_a_header_and_one_row_per_request() -> None:
    credential = CredentialFactory()
    UsageRecordFactory(created_at=at(1), credential=credential, credits=1.25)
    UsageRecordFactory(created_at=at(2), failed=True, input_tokens=7)

    rows = list(csv.reader(io.StringIO(export("--since", "2026-11-01", "--format", "csv"))))

    assert rows[0] == [
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
    ]
    assert rows[1] == [
        "2026-11-01T12:00:00.000000000+00:00",
        "0",
        str(credential.pk),
        "claude-sonnet-4-5-20250929",
        "1830",
        "412",
        "2210",
        "15800",
        "1.25",
        "6120",
        "success",
    ]
    assert rows[2][2] == "0"
    assert rows[2][4] == "7"
    assert rows[2][-1] == "error"
    assert len(rows) == 3


def test_since_and_until_are_inclusive_local_days(settings) -> None:
    settings.TIME_ZONE = "America/New_York"
    # Local days in New York: 31 Oct, 1 Nov, 2 Nov (late evening), 3 Nov.
    for moment, model in [
        (datetime(2026, 11, 1, 3, 0, tzinfo=UTC), "oct-31"),
        (datetime(2026, 11, 1, 15, 0, tzinfo=UTC), "nov-1"),
        (datetime(2026, 11, 3, 3, 0, tzinfo=UTC), "nov-2"),
        (datetime(2026, 11, 3, 15, 0, tzinfo=UTC), "nov-3"),
    ]:
        UsageRecordFactory(created_at=moment, model_requested=model)

    output = export("--since", "2026-11-01", "--until", "2026-11-02")

    assert [json.loads(line)["model"] for line in output.splitlines()] == ["nov-1", "nov-2"]


def test_it_leaves_out_what_the_log_leaves_out() -> None:
    UsageRecordFactory(created_at=at(1), endpoint="/v1/messages/count_tokens")
    UsageRecordFactory(created_at=at(1), endpoint="/v1/models")
    UsageRecordFactory(created_at=at(1), status=UsageStatus.REJECTED, http_status=401)
    UsageRecordFactory(created_at=at(1), status=UsageStatus.REJECTED, http_status=405)
    UsageRecordFactory(
        created_at=at(1), status=UsageStatus.REJECTED, http_status=400, model_requested="kept"
    )
    UsageRecordFactory(created_at=at(1), status=UsageStatus.ERROR, http_status=None)

    lines = [json.loads(line) for line in export("--since", "2026-11-01").splitlines()]

    assert [line["status"] for line in lines] == ["error", "error"]
    assert lines[0]["model"] == "kept"


def test_it_writes_to_a_file(tmp_path: Path) -> None:
    UsageRecordFactory(created_at=at(1))
    target = tmp_path / "out.csv"

    assert export("--since", "2026-11-01", "--format", "csv", "--output", str(target)) == ""

    assert target.read_text().splitlines()[0].startswith("ts,keyId,credentialId,")
    assert len(target.read_text().splitlines()) == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "2026-13-01"], "--since must be a date like 2026-11-01"),
        (["--since", "yesterday"], "--since must be a date like 2026-11-01"),
        (["--since", "2026-11-01", "--until", "11/30"], "--until must be a date"),
        (["--since", "2026-11-02", "--until", "2026-11-01"], "is before --since"),
        (["--since", "2026-11-01", "--format", "xml"], "--format must be one of jsonl, csv"),
        ([], "--since"),
    ],
)
def test_bad_arguments_are_refused_with_a_clear_message(args: list[str], message: str) -> None:
    with pytest.raises(CommandError, match=message):
        export(*args)


def test_an_unwritable_output_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="cannot write"):
        export("--since", "2026-11-01", "--output", str(tmp_path / "missing" / "out.jsonl"))
