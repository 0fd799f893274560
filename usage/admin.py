"""Read-only admin for usage: the table is big, so no full counts and a date hierarchy."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from usage.models import UpstreamAttempt, UsageRecord


class ReadOnlyMixin:
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.is_superuser


class UpstreamAttemptInline(ReadOnlyMixin, admin.TabularInline):
    model = UpstreamAttempt
    extra = 0
    fields = [
        "attempt",
        "credential",
        "endpoint",
        "http_status",
        "outcome",
        "duration_ms",
        "error_snippet",
    ]
    readonly_fields = fields
    can_delete = False


@admin.register(UsageRecord)
class UsageRecordAdmin(ReadOnlyMixin, admin.ModelAdmin):
    date_hierarchy = "created_at"
    show_full_result_count = False
    list_display = [
        "created_at",
        "endpoint",
        "model_requested",
        "status",
        "http_status",
        "client_key",
        "credential",
        "input_tokens",
        "output_tokens",
        "credits",
        "latency_ms",
        "first_token_ms",
        "attempt_count",
    ]
    list_filter = ["status", "endpoint", "stream", "error_type", "model_requested"]
    list_select_related = ["client_key", "credential"]
    search_fields = ["model_requested", "error_type", "error_message"]
    inlines = [UpstreamAttemptInline]


@admin.register(UpstreamAttempt)
class UpstreamAttemptAdmin(ReadOnlyMixin, admin.ModelAdmin):
    show_full_result_count = False
    list_display = [
        "usage_record",
        "attempt",
        "credential",
        "endpoint",
        "http_status",
        "outcome",
        "duration_ms",
    ]
    list_filter = ["outcome", "endpoint"]
    list_select_related = ["usage_record", "credential"]
