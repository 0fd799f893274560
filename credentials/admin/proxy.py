"""The proxy pool: entries, health checks, bulk add (kiro-ops §7)."""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import models
from django.db.models import Count, QuerySet
from django.http import (
    HttpRequest,
    HttpResponse,
)
from django.template.response import TemplateResponse
from django.urls import path
from django.utils.html import format_html

from credentials import (
    operations,
    services,
)
from credentials.admin.common import badge, short_time
from credentials.forms import (
    ProxyBulkAddForm,
    ProxyEntryForm,
)
from credentials.models import (
    Credential,
    ProxyEntry,
    ProxyHealth,
)


@admin.register(ProxyEntry)
class ProxyEntryAdmin(admin.ModelAdmin):
    """The proxy pool (spec kiro-ops §7). Passwords in URLs are masked on every page."""

    form = ProxyEntryForm
    change_list_template = "admin/credentials/proxyentry/change_list.html"
    list_display = [
        "masked_url", "label", "state", "latency", "last_checked", "failures",
        "credential_count",
    ]  # fmt: skip
    list_display_links = ["masked_url"]
    list_filter = ["enabled", "health", "auto_disabled"]
    search_fields = ["label"]  # not the URL: a search must not probe passwords
    actions = ["check_health", "enable_selected", "disable_selected"]
    _state_fields = [
        "health", "latency_ms", "last_checked_at", "consecutive_failures", "auto_disabled",
        "credential_count", "created_at",
    ]  # fmt: skip

    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest | None = None) -> bool:
        if lookup.startswith("url"):
            return False
        return super().lookup_allowed(lookup, value, request)

    def get_queryset(self, request: HttpRequest) -> QuerySet[ProxyEntry]:
        users = (
            Credential.objects.filter(proxy_url=models.OuterRef("url"))
            .order_by()
            .values("proxy_url")
            .annotate(n=Count("pk"))
            .values("n")
        )
        return (
            super()
            .get_queryset(request)
            .annotate(n_credentials=models.functions.Coalesce(models.Subquery(users), 0))
        )

    def get_fields(self, request: HttpRequest, obj: ProxyEntry | None = None) -> list[str]:
        if obj is None:
            return ["url", "label", "enabled"]
        # The URL is not editable: its stored form holds the password (delete and re-add).
        return ["masked_url", "label", "enabled", *self._state_fields]

    def get_readonly_fields(self, request: HttpRequest, obj: ProxyEntry | None = None) -> list:
        return [] if obj is None else ["masked_url", *self._state_fields]

    @admin.display(description="URL", ordering="url")
    def masked_url(self, obj: ProxyEntry) -> str:
        return services.proxy_mask(obj.url)

    @admin.display(description="state", ordering="enabled")
    def state(self, obj: ProxyEntry) -> str:
        tone = {ProxyHealth.HEALTHY: "ok", ProxyHealth.UNHEALTHY: "bad"}.get(obj.health, "plain")
        health = badge(obj.get_health_display().lower(), tone)
        if obj.enabled:
            return health
        off = "disabled after 3 failed checks" if obj.auto_disabled else "disabled"
        return format_html("{} {}", badge("disabled", "bad", off), health)

    @admin.display(description="last checked", ordering="last_checked_at")
    def last_checked(self, obj: ProxyEntry) -> str:
        return short_time(obj.last_checked_at)

    @admin.display(description="failures", ordering="consecutive_failures")
    def failures(self, obj: ProxyEntry) -> int:
        return obj.consecutive_failures

    @admin.display(description="latency", ordering="latency_ms")
    def latency(self, obj: ProxyEntry) -> str:
        return f"{obj.latency_ms} ms" if obj.latency_ms is not None else "—"

    @admin.display(description="credentials", ordering="n_credentials")
    def credential_count(self, obj: ProxyEntry) -> int:
        count = getattr(obj, "n_credentials", None)
        return count if count is not None else Credential.objects.filter(proxy_url=obj.url).count()

    def save_model(
        self, request: HttpRequest, obj: ProxyEntry, form: ProxyEntryForm, change: bool
    ) -> None:
        was_enabled = ProxyEntry.objects.filter(pk=obj.pk, enabled=True).exists()
        super().save_model(request, obj, form, change)
        if change and obj.enabled and not was_enabled:
            services.proxy_set_enabled(proxy_ids=[obj.pk], enabled=True)  # clears auto flag

    @admin.action(description="Check health now", permissions=["change"])
    def check_health(self, request: HttpRequest, queryset: QuerySet[ProxyEntry]) -> None:
        entries = {e.pk: e for e in queryset}
        checks = operations.run_sync(operations.check_proxies, proxy_ids=list(entries))
        for check in checks:
            entry = entries[check.proxy_id]
            verdict = "healthy" if check.healthy else "unhealthy"
            self.log_change(request, entry, f"Health check: {verdict} (admin)")
            self.message_user(
                request,
                f"{services.proxy_mask(entry.url)}: {verdict}, {check.detail}"
                + (" — disabled after 3 failures" if check.disabled else ""),
                messages.SUCCESS if check.healthy else messages.WARNING,
            )

    @admin.action(description="Enable (clears failures)", permissions=["change"])
    def enable_selected(self, request: HttpRequest, queryset: QuerySet[ProxyEntry]) -> None:
        self._set_enabled(request, queryset, True)

    @admin.action(description="Disable", permissions=["change"])
    def disable_selected(self, request: HttpRequest, queryset: QuerySet[ProxyEntry]) -> None:
        self._set_enabled(request, queryset, False)

    def _set_enabled(
        self, request: HttpRequest, queryset: QuerySet[ProxyEntry], enabled: bool
    ) -> None:
        entries = list(queryset)
        count = services.proxy_set_enabled(proxy_ids=[e.pk for e in entries], enabled=enabled)
        for entry in entries:
            self.log_change(request, entry, f"{'Enabled' if enabled else 'Disabled'} (admin)")
        self.message_user(request, f"{'Enabled' if enabled else 'Disabled'} {count} proxies.")

    def get_urls(self) -> list:
        return [
            path(
                "bulk-add/",
                self.admin_site.admin_view(self.bulk_add_view),
                name="credentials_proxyentry_bulk_add",
            ),
            *super().get_urls(),
        ]

    def bulk_add_view(self, request: HttpRequest) -> HttpResponse:
        """Add many proxies at once, one per line, with a per-line report."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = ProxyBulkAddForm(request.POST or None)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Add proxies in bulk",
        }
        if request.method == "POST" and form.is_valid():
            report = services.proxy_bulk_add(text=form.cleaned_data["urls"])
            added = [line for line in report if line.added]
            for entry in ProxyEntry.objects.filter(pk__in=[line.proxy_id for line in added]):
                self.log_addition(request, entry, "Added in bulk (admin)")
            context["report"] = report
            context["added"] = len(added)
            form = ProxyBulkAddForm()  # never echo the submitted URLs (passwords) back
        context["form"] = form
        return TemplateResponse(request, "admin/credentials/proxyentry/bulk_add.html", context)
