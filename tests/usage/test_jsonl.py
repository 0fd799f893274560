"""The kiro.rs JSONL usage log (spec kiro-ops §5.1): fields, files, concurrency, retention."""

from __future__ import annotations

import json
import re
import threading
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from tests.factories import ClientKeyFactory, CredentialFactory
from tests.usage.factories import UsageRecordFactory
from usage import jsonl
from usage.models import UsageStatus

# spec kiro-ops §5.1, spelled out here rather than taken from the module under test.
SPEC_FIELDS = [
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
INT_FIELDS = [
    "keyId",
    "credentialId",
    "inputTokens",
    "outputTokens",
    "cacheCreationTokens",
    "cacheReadTokens",
    "durationMs",
]
TS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{9}\+00:00$")
END = datetime(2026, 8, 13, 9, 41, 7, 512004, tzinfo=UTC)


@pytest.fixture
def log_dir(settings, tmp_path: Path) -> Path:
    settings.DATA_DIR = tmp_path
    settings.TIME_ZONE = "UTC"
    return tmp_path / "usage"


def lines_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def only_line(log_dir: Path) -> dict:
    files = sorted(log_dir.glob("usage_log.*.jsonl"))
    assert len(files) == 1
    (line,) = lines_of(files[0])
    return line


def assert_spec_shape(line: dict) -> None:
    assert list(line) == SPEC_FIELDS
    assert TS.match(line["ts"])
    for name in INT_FIELDS:
        assert type(line[name]) is int and line[name] >= 0, name
    assert type(line["model"]) is str
    assert type(line["credits"]) is float
    assert line["status"] in ("success", "error")


@pytest.mark.django_db
def test_it_writes_the_spec_fields_of_a_success(log_dir: Path) -> None:
    key = ClientKeyFactory()
    credential = CredentialFactory()
    record = UsageRecordFactory(created_at=END, client_key=key, credential=credential)

    jsonl.append_record(record)

    line = only_line(log_dir)
    assert_spec_shape(line)
    assert line == {
        "ts": "2026-08-13T09:41:07.512004000+00:00",
        "keyId": key.pk,
        "credentialId": credential.pk,
        "model": "claude-sonnet-4-5-20250929",
        "inputTokens": 1830,
        "outputTokens": 412,
        "cacheCreationTokens": 2210,
        "cacheReadTokens": 15800,
        "credits": 0.0421,
        "durationMs": 6120,
        "status": "success",
    }


@pytest.mark.django_db
def test_it_logs_an_error_with_credential_zero_and_estimated_input(log_dir: Path) -> None:
    record = UsageRecordFactory(
        failed=True, created_at=END, client_key=ClientKeyFactory(), input_tokens=1200
    )

    jsonl.append_record(record)

    line = only_line(log_dir)
    assert_spec_shape(line)
    assert line["status"] == "error"
    assert line["credentialId"] == 0
    assert line["inputTokens"] == 1200
    assert line["outputTokens"] == 0
    assert line["credits"] == 0.0


@pytest.mark.django_db
def test_it_logs_an_interrupted_stream_as_error(log_dir: Path) -> None:
    credential = CredentialFactory()
    record = UsageRecordFactory(
        status=UsageStatus.INTERRUPTED, credential=credential, error_type="client_disconnected"
    )

    jsonl.append_record(record)

    line = only_line(log_dir)
    assert_spec_shape(line)
    assert line["status"] == "error"
    assert line["credentialId"] == credential.pk


@pytest.mark.django_db
def test_it_logs_a_conversion_rejection_as_error(log_dir: Path) -> None:
    record = UsageRecordFactory(
        status=UsageStatus.REJECTED,
        http_status=400,
        error_type="invalid_request_error",
        client_key=ClientKeyFactory(),
        model_requested="claude-nope",
    )

    jsonl.append_record(record)

    line = only_line(log_dir)
    assert line["status"] == "error"
    assert line["model"] == "claude-nope"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("endpoint", "status", "http_status"),
    [
        ("/v1/messages/count_tokens", UsageStatus.SUCCESS, 200),
        ("/cc/v1/messages/count_tokens", UsageStatus.SUCCESS, 200),
        ("/v1/models", UsageStatus.SUCCESS, 200),
        ("/v1/messages", UsageStatus.REJECTED, 401),
        ("/v1/messages", UsageStatus.REJECTED, 405),
        ("/v1/*", UsageStatus.REJECTED, 404),
    ],
)
def test_it_does_not_log_what_kiro_rs_does_not(
    log_dir: Path, endpoint: str, status: str, http_status: int
) -> None:
    record = UsageRecordFactory(endpoint=endpoint, status=status, http_status=http_status)

    jsonl.append_record(record)

    assert not list(log_dir.glob("*.jsonl"))


@pytest.mark.django_db
@pytest.mark.parametrize("endpoint", jsonl.LOGGED_ENDPOINTS)
def test_it_logs_every_messages_shaped_endpoint(log_dir: Path, endpoint: str) -> None:
    jsonl.append_record(UsageRecordFactory(endpoint=endpoint))

    assert only_line(log_dir)["status"] == "success"


@pytest.mark.django_db
def test_it_gives_the_system_key_and_no_key_id_zero(log_dir: Path) -> None:
    system = ClientKeyFactory(is_system=True)
    jsonl.append_record(UsageRecordFactory(created_at=END, client_key=system))
    jsonl.append_record(UsageRecordFactory(created_at=END, client_key=None))

    (path,) = log_dir.glob("*.jsonl")
    assert [line["keyId"] for line in lines_of(path)] == [0, 0]


@pytest.mark.django_db
def test_it_looks_the_system_key_up_when_the_relation_is_not_loaded(log_dir: Path) -> None:
    from usage.models import UsageRecord

    system = ClientKeyFactory(is_system=True)
    pk = UsageRecordFactory(created_at=END, client_key=system).pk

    jsonl.append_record(UsageRecord.objects.get(pk=pk))

    assert only_line(log_dir)["keyId"] == 0


@pytest.mark.django_db
def test_it_names_files_by_the_local_date(log_dir: Path, settings) -> None:
    settings.TIME_ZONE = "America/New_York"
    # 03:30 UTC on 2 November is 22:30 on 1 November in New York.
    record = UsageRecordFactory(created_at=datetime(2026, 11, 2, 3, 30, tzinfo=UTC))

    jsonl.append_record(record)

    assert [p.name for p in log_dir.iterdir()] == ["usage_log.2026-11-01.jsonl"]
    assert only_line(log_dir)["ts"] == "2026-11-02T03:30:00.000000000+00:00"


@pytest.mark.django_db
def test_it_rolls_over_to_a_new_file_at_local_midnight(log_dir: Path, settings) -> None:
    settings.TIME_ZONE = "Asia/Shanghai"  # UTC+8: local midnight is 16:00 UTC
    before = UsageRecordFactory(created_at=datetime(2026, 11, 1, 15, 59, 59, 900000, tzinfo=UTC))
    after = UsageRecordFactory(created_at=datetime(2026, 11, 1, 16, 0, 0, 100000, tzinfo=UTC))
    later = UsageRecordFactory(created_at=datetime(2026, 11, 2, 1, 0, tzinfo=UTC))

    for record in (before, after, later):
        jsonl.append_record(record)

    first = lines_of(log_dir / "usage_log.2026-11-01.jsonl")
    second = lines_of(log_dir / "usage_log.2026-11-02.jsonl")
    assert [line["ts"][:19] for line in first] == ["2026-11-01T15:59:59"]
    assert [line["ts"][:19] for line in second] == ["2026-11-01T16:00:00", "2026-11-02T01:00:00"]


def test_concurrent_appends_from_threads_give_whole_lines(log_dir: Path) -> None:
    threads_count, per_thread = 8, 40
    # Lines well beyond PIPE_BUF (4096), where O_APPEND alone would not keep them whole.
    records = [
        [
            UsageRecordFactory.build(
                created_at=END, model_requested=f"t{t}-{i}-" + "x" * 9000, input_tokens=i
            )
            for i in range(per_thread)
        ]
        for t in range(threads_count)
    ]
    start = threading.Barrier(threads_count)

    def run(batch: list) -> None:
        start.wait()
        for record in batch:
            jsonl.append_record(record)

    threads = [threading.Thread(target=run, args=(batch,)) for batch in records]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    raw = (log_dir / "usage_log.2026-08-13.jsonl").read_text()
    assert raw.endswith("\n")
    lines = [json.loads(line) for line in raw.splitlines()]
    assert len(lines) == threads_count * per_thread
    assert {line["model"] for line in lines} == {r.model_requested for b in records for r in b}
    for line in lines:
        assert_spec_shape(line)


def test_it_never_raises_when_the_log_cannot_be_written(
    settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    settings.DATA_DIR = blocker  # DATA_DIR/usage cannot be created under a file

    jsonl.append_record(UsageRecordFactory.build(created_at=END))

    assert "could not append usage record" in caplog.text


def _touch_days(log_dir: Path, days: list[str]) -> None:
    log_dir.mkdir(parents=True)
    for day in days:
        (log_dir / f"usage_log.{day}.jsonl").write_text("{}\n")


def test_purge_deletes_files_older_than_the_retention(log_dir: Path) -> None:
    days = ["2026-11-01", "2026-11-06", "2026-11-07", "2026-11-09", "2026-11-10"]
    _touch_days(log_dir, days)
    (log_dir / "notes.txt").write_text("kept")
    (log_dir / "usage_log.garbage.jsonl").write_text("kept")

    removed = jsonl.purge_old_logs(retention_days=3, today=date(2026, 11, 10))

    assert [p.name for p in removed] == ["usage_log.2026-11-01.jsonl", "usage_log.2026-11-06.jsonl"]
    assert sorted(p.name for p in log_dir.iterdir()) == [
        "notes.txt",
        "usage_log.2026-11-07.jsonl",
        "usage_log.2026-11-09.jsonl",
        "usage_log.2026-11-10.jsonl",
        "usage_log.garbage.jsonl",
    ]


def test_purge_keeps_at_least_one_day(log_dir: Path) -> None:
    _touch_days(log_dir, ["2026-11-08", "2026-11-09", "2026-11-10"])

    removed = jsonl.purge_old_logs(retention_days=0, today=date(2026, 11, 10))

    assert [p.name for p in removed] == ["usage_log.2026-11-08.jsonl"]


def test_purge_without_a_log_directory_removes_nothing(log_dir: Path) -> None:
    assert jsonl.purge_old_logs(retention_days=1) == []
