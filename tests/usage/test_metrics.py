"""Prometheus /metrics: bearer-protected, process counters plus the pool's state from the DB."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import AsyncClient, Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from credentials import metrics as credential_metrics
from credentials.models import DisabledReason
from tests.factories import CredentialFactory
from tests.usage.factories import UpstreamAttemptFactory, UsageRecordFactory
from usage import metrics
from usage.models import AttemptOutcome, UsageStatus
from usage.services import AttemptDraft

TOKEN = "metrics-token-0123456789"


@pytest.fixture
def token(settings) -> str:
    settings.KIRO_METRICS_TOKEN = TOKEN
    return TOKEN


def sample(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


def scrape(client: Client) -> str:
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")
    return response.content.decode()


@pytest.mark.django_db
def test_it_is_not_found_when_no_token_is_set(settings, client: Client) -> None:
    settings.KIRO_METRICS_TOKEN = ""

    response = client.get("/metrics", HTTP_AUTHORIZATION="Bearer anything")

    assert response.status_code == 404
    assert response.json()["error"]["type"] == "not_found_error"


@pytest.mark.django_db
@pytest.mark.parametrize(
    "header",
    [None, "Bearer wrong-token", f"Basic {TOKEN}", f"Bearer {TOKEN}x", "Bearer "],
)
def test_it_refuses_a_missing_or_wrong_token(
    token: str, client: Client, header: str | None
) -> None:
    extra = {"HTTP_AUTHORIZATION": header} if header is not None else {}

    response = client.get("/metrics", **extra)

    assert response.status_code == 401
    assert response.json() == {
        "type": "error",
        "error": {
            "type": "authentication_error",
            "message": "A valid metrics bearer token is needed.",
        },
    }
    assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.django_db
def test_it_answers_only_get(token: str, client: Client) -> None:
    response = client.post("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")

    assert response.status_code == 405


@pytest.mark.django_db(transaction=True)
def test_it_exposes_request_attempt_latency_and_refresh_metrics(token: str) -> None:
    record = UsageRecordFactory(
        endpoint="/v1/messages", model_sent="claude-sonnet-4.5", latency_ms=2400
    )
    attempts = [
        AttemptDraft(
            credential_id=None, endpoint="ide", http_status=429, outcome="quota_exhausted"
        ),
        AttemptDraft(credential_id=None, endpoint="ide", http_status=200, outcome="success"),
    ]
    labels = {"endpoint": "/v1/messages", "status": "success", "model": "claude-sonnet-4.5"}
    requests_before = sample("kiro_requests_total", **labels)
    quota_before = sample("kiro_upstream_attempts_total", outcome="quota_exhausted")
    latency_before = sample("kiro_request_duration_seconds_sum", endpoint="/v1/messages")
    ttft_before = sample("kiro_time_to_first_token_seconds_count", endpoint="/v1/messages")
    output_before = sample("kiro_tokens_total", kind="output", model="claude-sonnet-4.5")
    grants_before = sample("kiro_token_refreshes_total", result="invalid_grant")

    metrics.observe_record(record, attempts)
    credential_metrics.observe_refresh("invalid_grant")

    assert sample("kiro_requests_total", **labels) == requests_before + 1
    assert sample("kiro_upstream_attempts_total", outcome="quota_exhausted") == quota_before + 1
    assert sample("kiro_request_duration_seconds_sum", endpoint="/v1/messages") == pytest.approx(
        latency_before + 2.4
    )
    assert sample("kiro_time_to_first_token_seconds_count", endpoint="/v1/messages") == (
        ttft_before + 1
    )
    assert sample("kiro_tokens_total", kind="output", model="claude-sonnet-4.5") == (
        output_before + 412
    )
    assert sample("kiro_token_refreshes_total", result="invalid_grant") == grants_before + 1

    body = scrape(Client())
    for name in (
        "kiro_requests_total{",
        "kiro_upstream_attempts_total{",
        "kiro_request_duration_seconds_bucket{",
        "kiro_time_to_first_token_seconds_bucket{",
        "kiro_token_refreshes_total{",
        "kiro_tokens_total{",
        "kiro_credits_total{",
        "kiro_credentials{",
        "process_cpu_seconds_total",
    ):
        assert name in body, name


@pytest.mark.django_db
def test_it_accepts_stored_attempts_and_skips_ttft_when_unknown() -> None:
    record = UsageRecordFactory(endpoint="/v1/responses", first_token_ms=None)
    attempt = UpstreamAttemptFactory(usage_record=record, outcome=AttemptOutcome.TRANSIENT)
    ttft_before = sample("kiro_time_to_first_token_seconds_count", endpoint="/v1/responses")
    transient_before = sample("kiro_upstream_attempts_total", outcome="transient")

    metrics.observe_record(record, [attempt])

    assert sample("kiro_upstream_attempts_total", outcome="transient") == transient_before + 1
    assert sample("kiro_time_to_first_token_seconds_count", endpoint="/v1/responses") == (
        ttft_before
    )


def test_refresh_results_start_at_zero_and_unknown_ones_count_as_failure() -> None:
    for result in ("success", "failure", "invalid_grant", "rate_limited"):
        assert (
            metrics.REGISTRY.get_sample_value("kiro_token_refreshes_total", {"result": result})
            is not None
        )
    failures_before = sample("kiro_token_refreshes_total", result="failure")

    credential_metrics.observe_refresh("bogus")

    assert sample("kiro_token_refreshes_total", result="failure") == failures_before + 1


def test_observing_a_broken_record_does_not_raise(caplog: pytest.LogCaptureFixture) -> None:
    record = UsageRecordFactory.build(status=UsageStatus.SUCCESS, latency_ms=None)

    metrics.observe_record(record, [])

    assert "could not observe usage record" in caplog.text


@pytest.mark.django_db(transaction=True)
def test_it_reports_credentials_by_state_from_the_database(token: str) -> None:
    now = timezone.now()
    CredentialFactory.create_batch(2)
    CredentialFactory(cooldown_until=now + timedelta(minutes=20))
    CredentialFactory(cooldown_until=now - timedelta(minutes=1))  # cooldown over: enabled
    CredentialFactory(enabled=False, disabled_reason=DisabledReason.QUOTA_EXCEEDED)
    CredentialFactory(enabled=False, disabled_reason=DisabledReason.QUOTA_EXCEEDED)
    CredentialFactory(
        enabled=False,
        disabled_reason=DisabledReason.MANUAL,
        cooldown_until=now + timedelta(minutes=5),
    )

    body = scrape(Client())

    (family,) = [f for f in text_string_to_metric_families(body) if f.name == "kiro_credentials"]
    values = {(s.labels["state"], s.labels["reason"]): s.value for s in family.samples}
    assert values[("enabled", "")] == 3
    assert values[("cooling_down", "")] == 1
    assert values[("disabled", "QuotaExceeded")] == 2
    assert values[("disabled", "Manual")] == 1
    assert values[("disabled", "Suspended")] == 0
    assert sum(values.values()) == 7


@pytest.mark.django_db
def test_credential_states_take_one_query(django_assert_num_queries) -> None:
    CredentialFactory.create_batch(3)
    CredentialFactory(enabled=False, disabled_reason=DisabledReason.SUSPENDED)

    with django_assert_num_queries(1):
        counts = metrics.credential_state_counts()

    assert counts == {("enabled", ""): 3, ("disabled", "Suspended"): 1}


@pytest.mark.django_db(transaction=True)
async def test_the_async_view_serves_an_async_client(token: str) -> None:
    response = await AsyncClient().get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})

    assert response.status_code == 200
    assert b"kiro_credentials{" in response.content


def test_models_past_the_label_limit_are_reported_as_other(monkeypatch) -> None:
    monkeypatch.setattr(metrics, "_models_seen", {f"m{i}" for i in range(metrics.MAX_MODEL_LABELS)})
    labels = {"endpoint": "/v1/messages", "status": "success"}
    other_before = sample("kiro_requests_total", model="other", **labels)

    metrics.observe_record(UsageRecordFactory.build(model_sent="client-invented-id"), [])

    assert sample("kiro_requests_total", model="other", **labels) == other_before + 1
    assert sample("kiro_requests_total", model="client-invented-id", **labels) == 0
