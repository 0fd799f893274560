"""Background jobs: leases across instances, balance refresh, retention, shutdown (§3.13)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.management import call_command
from django.utils import timezone

from credentials import jobs
from credentials.models import Credential, GatewaySettings, JobLock
from usage import jobs as usage_jobs
from usage.models import UsageRecord

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def no_gaps(monkeypatch):
    monkeypatch.setattr(jobs, "BALANCE_GAP_SECONDS", 0.0)


def _counting_jobs(counter: dict[str, int]) -> tuple[jobs.Job, ...]:
    def job(name: str) -> jobs.Job:
        async def run() -> str:
            counter[name] = counter.get(name, 0) + 1
            await asyncio.sleep(0.2)  # long enough for the other instance to try meanwhile
            return "done"

        return jobs.Job(name, 300, run)

    return (job("a"), job("b"), job("c"))


def test_two_concurrent_instances_run_each_job_once():
    counter: dict[str, int] = {}
    defined = _counting_jobs(counter)
    barrier = threading.Barrier(2)
    results: list[dict[str, str]] = []

    def instance(holder: str) -> None:
        barrier.wait()
        results.append(asyncio.run(jobs.run_due(holder, defined)))

    threads = [threading.Thread(target=instance, args=(f"host-{i}",)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert counter == {"a": 1, "b": 1, "c": 1}
    assert sorted(name for result in results for name in result) == ["a", "b", "c"]


def test_run_jobs_once_twice_at_the_same_time_runs_each_job_once():
    outputs: list[str] = []
    barrier = threading.Barrier(2)

    def invoke() -> None:
        from io import StringIO

        out = StringIO()
        barrier.wait()
        call_command("run_jobs", "--once", stdout=out)
        outputs.append(out.getvalue())

    threads = [threading.Thread(target=invoke) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    lines = [line for output in outputs for line in output.splitlines() if ":" in line]
    assert sorted(line.split(":")[0] for line in lines) == ["balances", "proxies", "retention"]
    assert JobLock.objects.filter(last_run_at__isnull=False).count() == 3


def test_a_job_runs_again_once_its_lease_expired():
    counter: dict[str, int] = {}
    defined = _counting_jobs(counter)[:1]
    asyncio.run(jobs.run_due("me", defined))
    asyncio.run(jobs.run_due("me", defined))
    assert counter == {"a": 1}

    JobLock.objects.filter(name="a").update(expires_at=timezone.now() - timedelta(seconds=1))
    asyncio.run(jobs.run_due("other", defined))

    assert counter == {"a": 2}
    assert JobLock.objects.get(name="a").holder == "other"


def test_a_failing_job_is_recorded_and_the_others_still_run():
    async def broken() -> str:
        raise RuntimeError("boom")

    async def fine() -> str:
        return "fine"

    results = asyncio.run(
        jobs.run_due("me", (jobs.Job("broken", 60, broken), jobs.Job("fine", 60, fine)))
    )

    assert results["fine"] == "fine"
    assert "RuntimeError: boom" in JobLock.objects.get(name="broken").last_result


def test_retention_deletes_records_attempts_and_logs_past_their_settings(settings, tmp_path):
    from usage import jsonl
    from usage.models import UpstreamAttempt

    settings.DATA_DIR = tmp_path
    row = GatewaySettings.load()
    row.usage_record_retention_days, row.trace_retention_days = 30, 7
    row.usage_log_retention_days = 3
    row.save()
    ancient = UsageRecord.objects.create(endpoint="/v1/messages", status="success")
    older = UsageRecord.objects.create(endpoint="/v1/messages", status="success")
    new = UsageRecord.objects.create(endpoint="/v1/messages", status="success")
    for record in (ancient, older, new):
        UpstreamAttempt.objects.create(usage_record=record, attempt=0, outcome="success")
    UsageRecord.objects.filter(pk=ancient.pk).update(created_at=timezone.now() - timedelta(days=31))
    UsageRecord.objects.filter(pk=older.pk).update(created_at=timezone.now() - timedelta(days=8))
    jsonl.append_record(UsageRecord.objects.get(pk=new.pk))
    stale = jsonl.log_path(timezone.localdate() - timedelta(days=10))
    stale.write_text("{}\n")

    result = asyncio.run(usage_jobs.retention())

    assert result.startswith("1 old usage records, 2 attempt rows, 1 log files")
    assert sorted(UsageRecord.objects.values_list("pk", flat=True)) == [older.pk, new.pk]
    assert list(UpstreamAttempt.objects.values_list("usage_record", flat=True)) == [new.pk]
    assert not stale.exists()


def test_a_retention_of_zero_keeps_every_usage_record():
    row = GatewaySettings.load()
    row.usage_record_retention_days = 0
    row.save()
    old = UsageRecord.objects.create(endpoint="/v1/messages", status="success")
    UsageRecord.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=999))

    asyncio.run(usage_jobs.retention())

    assert UsageRecord.objects.filter(pk=old.pk).exists()


def test_balances_refresh_only_enabled_credentials_with_a_stale_balance(gateway):
    stale, _ = gateway.add_credential()
    fresh, _ = gateway.add_credential()
    disabled, _ = gateway.add_credential()
    Credential.objects.filter(pk=fresh.pk).update(
        balance={"remaining": 1}, balance_checked_at=timezone.now()
    )
    Credential.objects.filter(pk=disabled.pk).update(enabled=False)

    result = asyncio.run(jobs.refresh_balances())

    assert result == "1 refreshed, 0 failed"
    assert Credential.objects.get(pk=stale.pk).balance_checked_at is not None
    assert Credential.objects.get(pk=disabled.pk).balance_checked_at is None
    assert len(gateway.fake.requests_for("usage")) == 1


def test_the_loop_stops_when_asked():
    async def main() -> float:
        stop = asyncio.Event()
        task = asyncio.create_task(jobs.run_forever(stop, holder="me"))
        await asyncio.sleep(0.3)
        started = time.monotonic()
        stop.set()
        await asyncio.wait_for(task, timeout=10)
        return time.monotonic() - started

    assert asyncio.run(main()) < 5
    assert JobLock.objects.filter(holder="me").count() == 3


@pytest.mark.timeout(120)
def test_run_jobs_exits_cleanly_on_sigterm(tmp_path: Path):
    env = {**os.environ, "DATA_DIR": str(tmp_path)}
    env.pop("DATABASE_URL", None)  # its own SQLite file, never the test database
    manage = str(Path(__file__).resolve().parents[2] / "manage.py")
    subprocess.run([sys.executable, manage, "migrate", "-v0"], env=env, check=True, timeout=100)
    process = subprocess.Popen(
        [sys.executable, manage, "run_jobs"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if _ran_jobs(tmp_path):
                break
            time.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
    assert code == 0, process.stdout.read().decode() if process.stdout else ""


def _ran_jobs(data_dir: Path) -> bool:
    import sqlite3

    try:
        with sqlite3.connect(data_dir / "db.sqlite3") as connection:
            rows = connection.execute(
                "select count(*) from credentials_joblock where last_run_at is not null"
            ).fetchone()
    except sqlite3.Error:
        return False
    return bool(rows and rows[0] >= 3)
