"""The five queries of README "SQL over usage", run as written on a seeded database."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.db import connection
from django.utils import timezone

from tests.factories import ClientKeyFactory, CredentialFactory
from tests.usage.factories import UpstreamAttemptFactory, UsageRecordFactory
from usage.models import AttemptOutcome, UsageStatus

README = Path(__file__).resolve().parents[2] / "README.md"
HEADING = "## SQL over usage"

pytestmark = pytest.mark.django_db


def readme_queries() -> dict[str, str]:
    """Return the ```sql blocks of the README section, keyed by their first comment line."""
    text = README.read_text()
    start = text.index(HEADING) + len(HEADING)
    end = text.find("\n## ", start)
    section = text[start : end if end != -1 else len(text)]
    blocks = re.findall(r"^```sql\n(.*?)^```$", section, flags=re.S | re.M)
    queries = {}
    for block in blocks:
        first, _, _ = block.partition("\n")
        assert first.startswith("-- "), "each query starts with a one-line comment naming it"
        queries[first[3:].strip()] = block
    return queries


def run(name: str) -> list[tuple]:
    sql = readme_queries()[name]
    with connection.cursor() as cursor:
        cursor.execute(sql)
        rows = cursor.fetchall()
    # Postgres gives Decimal for ROUND(numeric); SQLite gives float.
    return [tuple(float(v) if isinstance(v, Decimal) else v for v in row) for row in rows]


def test_the_readme_has_the_five_queries() -> None:
    assert list(readme_queries()) == [
        "credits per client key, this month",
        "failure rate by credential",
        "p95 latency by model",
        "tokens per day",
        "top error types",
    ]


def test_credits_per_client_key_this_month() -> None:
    alpha, beta = ClientKeyFactory(name="alpha"), ClientKeyFactory(name="beta")
    now = timezone.now()
    last_month = now.replace(day=1, hour=12) - timedelta(days=1)
    UsageRecordFactory(client_key=alpha, credits=1.5, input_tokens=10, output_tokens=5)
    UsageRecordFactory(client_key=alpha, credits=0.25, input_tokens=20, output_tokens=6)
    UsageRecordFactory(client_key=alpha, created_at=last_month, credits=100.0)
    UsageRecordFactory(
        client_key=beta,
        credits=3.0,
        input_tokens=1,
        cache_creation_tokens=2,
        cache_read_tokens=3,
        output_tokens=7,
    )
    UsageRecordFactory(client_key=None, credits=0.0, input_tokens=9, output_tokens=0)

    rows = run("credits per client key, this month")

    cache = 2210 + 15800  # the factory's cache tokens, on alpha's two rows
    assert [row[:2] for row in rows] == [("beta", 1), ("alpha", 2), ("(no key)", 1)]
    assert [row[2] for row in rows] == pytest.approx([3.0, 1.75, 0.0])
    assert rows[0][3:] == (6, 7)
    assert rows[1][3:] == (30 + 2 * cache, 11)


def test_failure_rate_by_credential() -> None:
    shaky = CredentialFactory(email="shaky@example.com")
    steady = CredentialFactory(email="steady@example.com")
    outcomes = [
        (shaky, AttemptOutcome.QUOTA_EXHAUSTED),
        (steady, AttemptOutcome.SUCCESS),
        (shaky, AttemptOutcome.SUCCESS),
        (shaky, AttemptOutcome.TRANSIENT),
        (shaky, AttemptOutcome.SUCCESS),
    ]
    for index, (credential, outcome) in enumerate(outcomes):
        UpstreamAttemptFactory(credential=credential, outcome=outcome, attempt=index)

    rows = run("failure rate by credential")

    assert rows == [
        (shaky.pk, "shaky@example.com", 4, 2, 50.0),
        (steady.pk, "steady@example.com", 1, 0, 0.0),
    ]


def test_p95_latency_by_model() -> None:
    for latency in range(100, 2001, 100):  # 20 successes: the 19th value is the p95
        UsageRecordFactory(model_requested="model-a", latency_ms=latency)
    UsageRecordFactory(model_requested="model-a", failed=True, latency_ms=99_999)
    UsageRecordFactory(
        model_requested="model-a", endpoint="/v1/messages/count_tokens", latency_ms=88_888
    )
    UsageRecordFactory(model_requested="model-b", latency_ms=500)
    UsageRecordFactory(model_requested="model-b", latency_ms=700, endpoint="/v1/responses")

    rows = run("p95 latency by model")

    assert rows == [("model-a", 20, 1900), ("model-b", 2, 700)]


def test_tokens_per_day() -> None:
    first = datetime(2026, 11, 1, 10, 0, tzinfo=UTC)
    second = datetime(2026, 11, 2, 23, 30, tzinfo=UTC)
    for moment, tokens in [(first, 100), (first + timedelta(hours=13), 50), (second, 7)]:
        UsageRecordFactory(
            created_at=moment,
            input_tokens=tokens,
            output_tokens=tokens * 2,
            cache_creation_tokens=1,
            cache_read_tokens=tokens * 10,
        )

    rows = run("tokens per day")

    assert rows == [
        ("2026-11-01", 2, 150, 300, 2, 1500),
        ("2026-11-02", 1, 7, 14, 1, 70),
    ]


def test_top_error_types() -> None:
    for _ in range(3):
        UsageRecordFactory(status=UsageStatus.ERROR, error_type="stream_interrupted")
    for _ in range(2):
        UsageRecordFactory(
            status=UsageStatus.REJECTED, http_status=400, error_type="invalid_request_error"
        )
    UsageRecordFactory(status=UsageStatus.INTERRUPTED, error_type="client_disconnected")
    UsageRecordFactory(status=UsageStatus.ERROR, error_type="")
    UsageRecordFactory(status=UsageStatus.SUCCESS, error_type="")

    rows = run("top error types")

    assert [row[:2] for row in rows] == [
        ("stream_interrupted", 3),
        ("invalid_request_error", 2),
        ("client_disconnected", 1),
    ]
