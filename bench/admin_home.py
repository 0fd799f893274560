"""Benchmark the operator home (the admin index) over a day of 100,000 usage records.

Run: .venv/bin/python bench/admin_home.py [--db sqlite|postgres|both] [--records N] [--runs N]

Each database runs in a child process of its own (Django's settings are per process):

- SQLite: a scratch file under a temporary DATA_DIR, migrated from scratch;
- Postgres (when DATABASE_URL names one): Django's test database of that URL (`test_<name>`),
  created for the run and dropped after it (so not beside a test run on the same URL); the
  database the URL names is not touched.

The scratch database gets 50 credentials (with balances and model lists), the three job
leases, and N usage records (bulk_create) spread at random over the last 24 hours and written
oldest first, as the gateway writes them. The bench then prints the median (and the best) of
several runs of: the two usage queries of the home (`usage.home.usage_windows`), each alone,
everything the home reads (`usage.home.operator_home`), and a full `GET /admin/` through
Django's test client as a superuser (session, template and all); then the usage queries'
plans. The target is under 100 ms for the GET.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MODELS = ["claude-sonnet-4.5", "claude-haiku-4.5", "claude-opus-4.5", "claude-sonnet-4", "auto"]
CREDENTIALS = 50
BATCH = 5000


def median_ms(run: Callable[[], object], runs: int) -> tuple[float, float]:
    """Run once to warm up, then `runs` times; return the median and the best, in ms."""
    run()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), min(times)


def seed(records: int) -> None:
    from django.utils import timezone

    from credentials.models import Credential, JobLock
    from usage.models import UsageRecord, UsageStatus

    rng = random.Random(13)
    now = timezone.now()
    credentials = Credential.objects.bulk_create(
        Credential(
            name=f"bench {i}",
            auth_method="social",
            refresh_token="aor" + "x" * 100,
            enabled=i % 10 != 0,
            disabled_reason="" if i % 10 else "Manual",
            balance={"current_usage": i * 20.0, "usage_limit": 1000.0, "remaining": 1000 - i * 20},
            available_models=MODELS[: 1 + i % len(MODELS)],
        )
        for i in range(CREDENTIALS)
    )
    for name in ("balances", "proxies", "retention"):
        JobLock.objects.create(name=name, last_run_at=now - timedelta(minutes=3), last_result="ok")
    statuses = [UsageStatus.SUCCESS] * 95 + [UsageStatus.ERROR] * 3 + [UsageStatus.REJECTED] * 2
    # Oldest first, as the gateway writes them: the table's order follows created_at.
    ages = sorted((rng.uniform(0, 86_400) for _ in range(records)), reverse=True)
    made = 0
    while made < records:
        batch = []
        for age in ages[made : made + BATCH]:
            status = rng.choice(statuses)
            batch.append(
                UsageRecord(
                    created_at=now - timedelta(seconds=age),
                    endpoint="/v1/messages",
                    model_requested="claude-sonnet-4-5",
                    model_sent="" if status == UsageStatus.REJECTED else rng.choice(MODELS),
                    credential=rng.choice(credentials),
                    status=status,
                    http_status=200 if status == UsageStatus.SUCCESS else 502,
                    error_type="" if status == UsageStatus.SUCCESS else "api_error",
                    stream=True,
                    input_tokens=rng.randint(100, 50_000),
                    output_tokens=rng.randint(10, 4000),
                    credits=rng.uniform(0.01, 0.5),
                    latency_ms=int(rng.lognormvariate(8, 0.6)),
                    first_token_ms=rng.randint(300, 3000),
                    attempt_count=1,
                )
            )
        UsageRecord.objects.bulk_create(batch)
        made += len(batch)


def plans() -> list[str]:
    """Return the query plans of the two usage queries, one line each."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from usage import home

    with CaptureQueriesContext(connection) as captured:
        home.usage_windows(timezone.now())
    explain = "EXPLAIN QUERY PLAN " if connection.vendor == "sqlite" else "EXPLAIN "
    lines = []
    with connection.cursor() as cursor:
        for query in captured.captured_queries:
            cursor.execute(explain + query["sql"])
            rows = cursor.fetchall()
            lines.append(" | ".join(str(row[-1]) for row in rows))
    return lines


def child(args: argparse.Namespace) -> None:
    import logging

    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kiro_site.settings")
    django.setup()
    logging.getLogger("axes").setLevel(logging.WARNING)  # a line per force_login otherwise
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.test.utils import setup_test_environment
    from django.utils import timezone

    from usage import home

    postgres = connection.vendor == "postgresql"
    named = connection.settings_dict["NAME"]
    if postgres:
        connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=False)
    else:
        call_command("migrate", verbosity=0)
    try:
        setup_test_environment()
        settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]
        start = time.perf_counter()
        seed(args.records)
        seeded = time.perf_counter() - start
        if postgres:
            with connection.cursor() as cursor:
                cursor.execute("ANALYZE")  # what autovacuum does soon after such a load
        user = get_user_model().objects.create_superuser("bench", "", "bench-password-42")
        client = Client()
        client.force_login(user)
        response = client.get("/admin/")
        assert response.status_code == 200, response.status_code
        assert b'id="home-traffic"' in response.content

        usage_ms = median_ms(lambda: home.usage_windows(timezone.now()), args.runs)
        now = timezone.now()
        traffic = home.usage_traffic(now=now)
        day, hour = home.total(traffic.slices), home.total(traffic.hour)
        p95_windows = [(now - home.HOUR, now, hour.successes), (now - home.DAY, now, day.successes)]
        traffic_ms = median_ms(lambda: home.usage_traffic(now=now), args.runs)
        p95_ms = median_ms(lambda: home.usage_p95(windows=p95_windows), args.runs)
        home_ms = median_ms(lambda: home.operator_home(user=user), args.runs)
        get_ms = median_ms(lambda: client.get("/admin/"), args.runs)
        name = f"{connection.vendor} {connection.pg_version if postgres else ''}".strip()
        print(f"\n== {name}: {args.records:,} usage records over 24 h (seeded in {seeded:.1f} s)")
        print(f"   runs: {args.runs}, median / best in ms")
        print(f"   home usage queries (2):   {usage_ms[0]:7.1f} / {usage_ms[1]:7.1f}")
        print(f"     1. the day's slices:     {traffic_ms[0]:7.1f} / {traffic_ms[1]:7.1f}")
        print(f"     2. p95 of both windows:  {p95_ms[0]:7.1f} / {p95_ms[1]:7.1f}")
        print(f"   home reads (all sections): {home_ms[0]:6.1f} / {home_ms[1]:7.1f}")
        print(f"   GET /admin/ (superuser):  {get_ms[0]:7.1f} / {get_ms[1]:7.1f}")
        for index, plan in enumerate(plans(), 1):
            print(f"   plan {index}: {plan[:400]}")
    finally:
        if postgres:
            connection.creation.destroy_test_db(named, verbosity=0, keepdb=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    database_url = os.environ.get("DATABASE_URL", "")
    wanted = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    passed = [f"--records={args.records}", f"--runs={args.runs}", "--child"]
    for db in wanted:
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
        if db == "postgres":
            if not database_url.startswith("postgres"):
                print("\n== postgres: skipped (DATABASE_URL names no Postgres database)")
                continue
            env["DATABASE_URL"] = database_url
        with tempfile.TemporaryDirectory(prefix="bench-admin-home-") as data_dir:
            env["DATA_DIR"] = data_dir
            subprocess.run([sys.executable, __file__, *passed], env=env, check=True, cwd=ROOT)


if __name__ == "__main__":
    main()
