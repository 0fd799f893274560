"""Read-only admin for usage: the table is big, so no full counts and a date hierarchy."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import URLPattern, path
from django.utils.html import format_html

from credentials.admin.common import CHANGE_LIST_TEMPLATE, badge, short_time, with_sub
from usage import dashboard
from usage.models import AttemptOutcome, UpstreamAttempt, UsageRecord, UsageStatus

# How many recent records the normaliser-rule filter reads to offer its choices; any rule name
# still filters through the URL, this only bounds the work of building the sidebar.
RULE_SAMPLE_SIZE = 2000


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


class NormalizerRuleFilter(admin.SimpleListFilter):
    """Filter records by one normaliser rule in their JSON list of fired rules."""

    title = "normaliser rule"
    parameter_name = "normalizer_rule"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        """Offer the rules seen in the most recent records."""
        recent = (
            model_admin.get_queryset(request)
            .exclude(normalizer_rules=[])
            .order_by("-created_at")
            .values_list("normalizer_rules", flat=True)[:RULE_SAMPLE_SIZE]
        )
        names = {str(rule) for rules in recent if isinstance(rules, list) for rule in rules}
        return [(name, name) for name in sorted(names)]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        """Keep the records whose rule list holds the chosen rule."""
        rule = self.value()
        if not rule:
            return queryset
        # `__contains` on a JSONField is Postgres-only; the quoted name matched against the
        # JSON text is exact per element on both SQLite and Postgres (names hold no quotes).
        return queryset.filter(normalizer_rules__icontains=json.dumps(rule))


STATUS_TONES = {
    UsageStatus.SUCCESS: "ok",
    UsageStatus.INTERRUPTED: "warn",
    UsageStatus.REJECTED: "warn",
    UsageStatus.ERROR: "bad",
}
OUTCOME_TONES = {AttemptOutcome.SUCCESS: "ok", AttemptOutcome.TRANSIENT: "warn"}


def status_badge(status: str, http_status: int | None, tones: dict[str, str]) -> str:
    """Render a status as a badge with its HTTP status beside it."""
    code = f" {http_status}" if http_status is not None else ""
    return badge(f"{status}{code}", tones.get(status, "bad"))


@admin.register(UsageRecord)
class UsageRecordAdmin(ReadOnlyMixin, admin.ModelAdmin):
    date_hierarchy = "created_at"
    show_full_result_count = False
    # What an operator scans, fitting 1,280 px; first token, attempts, cache tokens, the error
    # and the rules are on the record's page (and its attempt chain).
    list_display = [
        "when",
        "model_column",
        "status_column",
        "key",
        "served_by",
        "tokens",
        "credits_column",
        "latency",
    ]
    list_filter = [
        "status",
        "endpoint",
        "stream",
        "model_requested",
        "credential",
        "client_key",
        "error_type",
        NormalizerRuleFilter,
    ]
    list_select_related = ["client_key", "credential"]
    search_fields = ["model_requested", "error_type", "error_message", "=trace_id"]
    inlines = [UpstreamAttemptInline]
    fieldsets = [
        (None, {"fields": [
            "created_at", "endpoint", "stream", "client_key", "credential", "model_requested",
            "model_sent",
        ]}),
        ("Outcome", {"fields": [
            "status", "http_status", "error_type", "error_message", "attempt_count",
        ]}),
        ("Tokens and time", {"fields": [
            "input_tokens", "output_tokens", "cache_creation_tokens", "cache_read_tokens",
            "credits", "latency_ms", "first_token_ms",
        ]}),
        ("Trace", {"fields": ["normalizer_rules", "trace_id"]}),
    ]  # fmt: skip

    @admin.display(description="time", ordering="created_at")
    def when(self, obj: UsageRecord) -> str:
        return short_time(obj.created_at)

    @admin.display(description="model / endpoint", ordering="model_requested")
    def model_column(self, obj: UsageRecord) -> str:
        return with_sub(obj.model_requested or "—", obj.endpoint)

    @admin.display(description="key", ordering="client_key__name")
    def key(self, obj: UsageRecord) -> str:
        return obj.client_key.name if obj.client_key else "—"

    @admin.display(description="credential", ordering="credential")
    def served_by(self, obj: UsageRecord) -> str:
        return str(obj.credential) if obj.credential else "—"

    @admin.display(description="latency", ordering="latency_ms")
    def latency(self, obj: UsageRecord) -> str:
        first = f"first token {obj.first_token_ms:,} ms" if obj.first_token_ms is not None else ""
        return format_html(
            '<span class="kg-num" title="{}">{} ms</span>', first, f"{obj.latency_ms:,}"
        )

    @admin.display(description="status", ordering="status")
    def status_column(self, obj: UsageRecord) -> str:
        cell = status_badge(obj.status, obj.http_status, STATUS_TONES)
        return with_sub(cell, obj.error_type)

    @admin.display(description="tokens in / out", ordering="input_tokens")
    def tokens(self, obj: UsageRecord) -> str:
        cell = format_html(
            '<span class="kg-num">{}</span> / <span class="kg-num">{}</span>',
            f"{obj.input_tokens:,}",
            f"{obj.output_tokens:,}",
        )
        cached = obj.cache_creation_tokens + obj.cache_read_tokens
        return with_sub(cell, f"+{cached:,} cached in" if cached else "")

    @admin.display(description="credits", ordering="credits")
    def credits_column(self, obj: UsageRecord) -> str:
        return format_html(
            '<span class="kg-num" title="{}">{}</span>', obj.credits, f"{obj.credits:.4f}"
        )

    def get_urls(self) -> list[URLPattern]:
        """Add the dashboard before the default routes (which would read it as an object id)."""
        opts = self.model._meta
        dashboard_url = path(
            "dashboard/",
            self.admin_site.admin_view(self.dashboard_view),
            name=f"{opts.app_label}_{opts.model_name}_dashboard",
        )
        return [dashboard_url, *super().get_urls()]

    def dashboard_view(self, request: HttpRequest) -> TemplateResponse:
        """Show usage over a window: series, breakdowns, top errors and the live feed."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        window = request.GET.get("window", dashboard.DEFAULT_WINDOW)
        if window not in dashboard.WINDOWS:
            window = dashboard.DEFAULT_WINDOW
        data = dashboard.usage_dashboard(window=window)
        context = {
            **self.admin_site.each_context(request),
            "title": "Usage dashboard",
            "opts": self.model._meta,
            "windows": dashboard.WINDOWS.values(),
            "window": dashboard.WINDOWS[window],
            "data": data,
            "live_path": "/ws/usage/live/",
        }
        return TemplateResponse(request, "admin/usage/dashboard.html", context)


@admin.register(UpstreamAttempt)
class UpstreamAttemptAdmin(ReadOnlyMixin, admin.ModelAdmin):
    change_list_template = CHANGE_LIST_TEMPLATE
    show_full_result_count = False
    list_display = [
        "record",
        "attempt",
        "served_by",
        "endpoint",
        "outcome_column",
        "duration_ms",
    ]
    list_filter = ["outcome", "endpoint"]
    list_select_related = ["usage_record", "credential"]

    @admin.display(description="usage record", ordering="usage_record")
    def record(self, obj: UpstreamAttempt) -> str:
        created = obj.usage_record.created_at
        return with_sub(f"#{obj.usage_record_id}", f"{created:%Y-%m-%d %H:%M:%S}")

    @admin.display(description="credential", ordering="credential")
    def served_by(self, obj: UpstreamAttempt) -> str:
        return str(obj.credential) if obj.credential else "—"

    @admin.display(description="outcome", ordering="outcome")
    def outcome_column(self, obj: UpstreamAttempt) -> str:
        return status_badge(obj.outcome, obj.http_status, OUTCOME_TONES)
