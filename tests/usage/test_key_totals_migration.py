"""usage migration 0005: the client keys' lifetime totals are backfilled from their records."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

OLD = [("usage", "0004_trace_id"), ("credentials", "0010_client_key_lifetime_totals")]
NEW = [("usage", "0005_client_key_lifetime_totals")]
JANUARY = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
MARCH = datetime(2026, 3, 9, 12, 0, tzinfo=UTC)


@pytest.mark.django_db(transaction=True)
def test_the_totals_are_backfilled_from_the_records_the_limits_would_have_counted(
    back_to_the_latest_schema,
):
    executor = MigrationExecutor(connection)
    executor.migrate(OLD)
    old_apps = executor.loader.project_state(OLD).apps
    Key = old_apps.get_model("credentials", "ClientKey")
    Window = old_apps.get_model("credentials", "ClientKeyWindow")
    Record = old_apps.get_model("usage", "UsageRecord")
    with_row = Key.objects.create(name="with a month row", prefix="sk-a", key_hash="a" * 64)
    without_row = Key.objects.create(name="records only", prefix="sk-b", key_hash="b" * 64)
    idle = Key.objects.create(name="idle", prefix="sk-c", key_hash="c" * 64)
    Window.objects.create(client_key=with_row, kind="month", start=MARCH, requests=1)
    Window.objects.create(client_key=idle, kind="month", start=MARCH)

    def record(key, **values):
        defaults = {"endpoint": "/v1/messages", "status": "success", "created_at": MARCH}
        Record.objects.create(client_key=key, **(defaults | values))

    record(with_row, input_tokens=100, output_tokens=10, credits=0.5, created_at=JANUARY)
    record(with_row, input_tokens=200, output_tokens=20, credits=0.25, endpoint="/v1/responses")
    record(with_row, endpoint="/v1/messages/count_tokens", input_tokens=999)  # local answer
    record(with_row, status="rejected", error_type="key_rpm_limit")  # refused by its limits
    record(without_row, input_tokens=7, output_tokens=3, credits=1.0)
    record(  # the cached parts of a prompt count as input
        without_row, input_tokens=5, cache_creation_tokens=40, cache_read_tokens=60, credits=0.5
    )
    record(None, input_tokens=5)

    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(NEW)
    Window = executor.loader.project_state(NEW).apps.get_model("credentials", "ClientKeyWindow")

    def totals(key):
        row = Window.objects.get(client_key_id=key.pk, kind="month")
        return (
            row.total_requests,
            row.total_input_tokens,
            row.total_output_tokens,
            row.total_credits,
            row.totals_since,
        )

    assert totals(with_row) == (2, 300, 30, 0.75, JANUARY)
    assert totals(without_row) == (2, 112, 3, 1.5, MARCH)
    assert totals(idle)[:4] == (0, 0, 0, 0.0)
    assert totals(idle)[4] is not None
    assert Window.objects.get(client_key_id=with_row.pk, kind="month").requests == 1
