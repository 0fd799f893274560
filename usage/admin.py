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

from usage import dashboard
from usage.models import UpstreamAttempt, UsageRecord

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
