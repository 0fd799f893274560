"""Factories for usage rows (kept beside the usage tests)."""

from __future__ import annotations

import factory
from django.utils import timezone

from usage.models import AttemptOutcome, UpstreamAttempt, UsageRecord, UsageStatus


class UsageRecordFactory(factory.django.DjangoModelFactory):
    """A successful /v1/messages request; override what a test is about."""

    class Meta:
        model = UsageRecord

    class Params:
        failed = factory.Trait(
            status=UsageStatus.ERROR,
            http_status=502,
            error_type="api_error",
            credential=None,
            output_tokens=0,
            credits=0.0,
        )

    created_at = factory.LazyFunction(timezone.now)
    endpoint = "/v1/messages"
    model_requested = "claude-sonnet-4-5-20250929"
    model_sent = "claude-sonnet-4.5"
    status = UsageStatus.SUCCESS
    http_status = 200
    stream = True
    input_tokens = 1830
    output_tokens = 412
    cache_creation_tokens = 2210
    cache_read_tokens = 15800
    credits = 0.0421
    latency_ms = 6120
    first_token_ms = 850


class UpstreamAttemptFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = UpstreamAttempt

    usage_record = factory.SubFactory(UsageRecordFactory)
    attempt = 0
    endpoint = "ide"
    http_status = 200
    outcome = AttemptOutcome.SUCCESS
    duration_ms = 800
