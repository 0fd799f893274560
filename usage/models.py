"""One UsageRecord per client request, one UpstreamAttempt per try against Kiro."""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from credentials.models import ClientKey, Credential
from gateway.protocol.errors import ERROR_TYPE_MEANINGS

#: The documented values of `UsageRecord.error_type` (gateway.protocol.errors.ErrorType).
ERROR_TYPE_CHOICES = [(kind.value, kind.value) for kind in ERROR_TYPE_MEANINGS]


class UsageStatus(models.TextChoices):
    SUCCESS = "success", "Success"
    ERROR = "error", "Error"
    INTERRUPTED = "interrupted", "Interrupted"
    REJECTED = "rejected", "Rejected"


class AttemptOutcome(models.TextChoices):
    # spec kiro-ops §5.4 outcome values
    SUCCESS = "success", "Success"
    QUOTA_EXHAUSTED = "quota_exhausted", "Quota exhausted"
    ACCOUNT_THROTTLED = "account_throttled", "Account throttled"
    ACCOUNT_SUSPENDED = "account_suspended", "Account suspended"
    AUTH_FAILED = "auth_failed", "Auth failed"
    TRANSIENT = "transient", "Transient"
    NETWORK_ERROR = "network_error", "Network error"
    BAD_REQUEST = "bad_request", "Bad request"
    UNKNOWN = "unknown", "Unknown"


class UsageRecord(models.Model):
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    client_key = models.ForeignKey(
        ClientKey, null=True, blank=True, on_delete=models.SET_NULL, related_name="usage"
    )
    endpoint = models.CharField(max_length=64)
    model_requested = models.CharField(max_length=200, blank=True)
    model_sent = models.CharField(max_length=200, blank=True)
    credential = models.ForeignKey(
        Credential, null=True, blank=True, on_delete=models.SET_NULL, related_name="usage"
    )
    status = models.CharField(max_length=16, choices=UsageStatus.choices)
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    error_type = models.CharField(
        max_length=64,
        blank=True,
        db_index=True,
        choices=ERROR_TYPE_CHOICES,
        help_text="Why the request failed (README: Error types); empty on success.",
    )
    error_message = models.TextField(blank=True)
    stream = models.BooleanField(default=False)
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    cache_creation_tokens = models.PositiveIntegerField(default=0)
    cache_read_tokens = models.PositiveIntegerField(default=0)
    credits = models.FloatField(default=0.0)
    latency_ms = models.PositiveIntegerField(default=0)
    first_token_ms = models.PositiveIntegerField(null=True, blank=True)
    attempt_count = models.PositiveSmallIntegerField(default=0)
    normalizer_rules = models.JSONField(default=list, blank=True)
    trace_id = models.CharField(
        max_length=32, blank=True, help_text="OpenTelemetry trace id, when tracing is on."
    )

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["client_key", "created_at"]),
            models.Index(fields=["credential", "created_at"]),
            models.Index(fields=["model_requested", "created_at"]),
            # Serves lookups by status (it replaced status's own index) and the p95 latency of a
            # window without reading the table: the operator home (usage/home.py).
            models.Index(
                fields=["status", "created_at", "latency_ms"], name="usage_status_time_latency"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.endpoint} {self.status}"


class UpstreamAttempt(models.Model):
    usage_record = models.ForeignKey(UsageRecord, on_delete=models.CASCADE, related_name="attempts")
    attempt = models.PositiveSmallIntegerField(help_text="0-based, in order of the tries.")
    credential = models.ForeignKey(
        Credential, null=True, blank=True, on_delete=models.SET_NULL, related_name="attempts"
    )
    endpoint = models.CharField(max_length=8, blank=True)
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    outcome = models.CharField(max_length=32, choices=AttemptOutcome.choices)
    error_snippet = models.TextField(blank=True)
    duration_ms = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["usage_record", "attempt"]
        constraints = [
            models.UniqueConstraint(fields=["usage_record", "attempt"], name="one_row_per_attempt")
        ]

    def __str__(self) -> str:
        return f"attempt {self.attempt}: {self.outcome}"
