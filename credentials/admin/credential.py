"""The credential list and change page; the console pages and actions come from mixins of
their own modules (kiro-rs files, batch import, operations console, login flows, actions)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db import transaction
from django.db.models import Q, QuerySet
from django.http import (
    HttpRequest,
    HttpResponse,
)
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.utils.html import format_html
from django.views.decorators.debug import sensitive_post_parameters

from credentials import (
    operations,
    services,
)
from credentials.admin.actions import CredentialActions
from credentials.admin.batch import BatchImportPages
from credentials.admin.common import (
    URL_FIELDS,
    NoSecretLookupsMixin,
    badge,
    download,
    short_time,
    with_sub,
)
from credentials.admin.console import ConsolePages
from credentials.admin.kiro_files import KiroFilePages
from credentials.admin.login_pages import LoginPages
from credentials.forms import (
    CredentialConsoleForm,
)
from credentials.kiro_files import dump_json
from credentials.models import (
    Credential,
)


class CredentialStateFilter(admin.SimpleListFilter):
    """Filter credentials by the state the status column shows (the operator home links here)."""

    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("enabled", "enabled"), ("cooling", "cooling down"), ("disabled", "disabled")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        now = timezone.now()
        cooling = Q(enabled=True, cooldown_until__gt=now)
        match self.value():
            case "enabled":
                return queryset.filter(enabled=True).exclude(cooling)
            case "cooling":
                return queryset.filter(cooling)
            case "disabled":
                return queryset.filter(enabled=False)
        return queryset  # no choice, or one this filter does not know: everything


@admin.register(Credential)
class CredentialAdmin(
    NoSecretLookupsMixin,
    KiroFilePages,
    BatchImportPages,
    ConsolePages,
    LoginPages,
    CredentialActions,
    admin.ModelAdmin,
):
    form = CredentialConsoleForm
    formfield_overrides = URL_FIELDS
    change_list_template = "admin/credentials/credential/ops_change_list.html"
    # What an operator scans, fitting 1,280 px; the rest (groups, token expiry, email, plan,
    # disabled reason in full) is on the change page.
    list_display = [
        "label", "status", "priority", "balance_column", "overage_column", "failures",
        "last_used",
    ]  # fmt: skip
    list_display_links = ["label"]
    list_filter = [
        CredentialStateFilter,
        "enabled",
        "auth_method",
        "disabled_reason",
        "groups",
        "subscription_title",
        "endpoint",
    ]
    search_fields = ["name", "email", "provider", "source_channel", "=id"]
    list_per_page = 50
    ordering = ["priority", "id"]
    actions = [
        "enable", "disable", "reset_failures", "export_selected", "refresh_token_now",
        "check_balance", "bulk_verify", "disable_exceeded", "overage_on", "overage_off",
        "edit_groups", "assign_proxy", "assign_proxy_round_robin",
    ]  # fmt: skip
    readonly_fields = [
        "enabled", "disabled_reason", "failure_count", "refresh_failure_count",
        "total_failure_count", "success_count", "last_used_at", "cooldown_until",
        "self_heal_rounds", "self_heal_total", "last_self_heal_at", "self_heal_model",
        "kiro_created_at", "created_at", "updated_at", "unknown_keys", "balance_summary",
        "overage_column",
    ]  # fmt: skip
    fieldsets = [
        (None, {"fields": ["name", "auth_method", "provider", "priority", "groups", "endpoint"]}),
        ("Tokens (write-only)", {"fields": [
            "refresh_token", "access_token", "expires_at", "kiro_api_key",
        ]}),
        ("OIDC / identity provider", {"fields": [
            "client_id", "client_secret", "start_url", "token_endpoint", "issuer_url", "scopes",
        ]}),
        ("Regions and identity", {"fields": [
            "region", "auth_region", "api_region", "machine_id", "profile_arn",
        ]}),
        ("Proxy", {"fields": ["proxy_url", "proxy_username", "proxy_password"]}),
        ("Account", {"fields": [
            "email", "subscription_title", "source_channel", "balance_summary", "overage_column",
        ]}),
        ("State", {"fields": [
            "enabled", "disabled_reason", "failure_count", "refresh_failure_count",
            "total_failure_count", "success_count", "last_used_at", "cooldown_until",
        ]}),
        ("Self-heal", {"classes": ["collapse"], "fields": [
            "self_heal_rounds", "self_heal_total", "last_self_heal_at", "self_heal_model",
        ]}),
        ("Interchange", {"classes": ["collapse"], "fields": [
            "unknown_keys", "kiro_created_at", "created_at", "updated_at",
        ]}),
    ]  # fmt: skip
    filter_horizontal = ["groups"]

    @admin.display(description="credential", ordering="id")
    def label(self, obj: Credential) -> str:
        plan = f"{obj.auth_method} · {obj.subscription_title}" if obj.subscription_title else ""
        name = obj.name or obj.email or obj.provider or "—"
        return with_sub(f"#{obj.pk} {name}", plan or obj.auth_method)

    @admin.display(description="status", ordering="enabled")
    def status(self, obj: Credential) -> str:
        if not obj.enabled:
            reason = obj.get_disabled_reason_display() if obj.disabled_reason else ""
            return with_sub(badge("disabled", "bad", reason), reason)
        if obj.cooldown_until and obj.cooldown_until > timezone.now():
            until = timezone.localtime(obj.cooldown_until).strftime("%Y-%m-%d %H:%M:%S")
            return badge("cooling down", "warn", f"until {until}")
        return badge("enabled", "ok")

    @admin.display(description="failures")
    def failures(self, obj: Credential) -> str:
        return format_html(
            '<span class="kg-num" title="consecutive / refresh / total">{} / {} / {}</span>',
            obj.failure_count,
            obj.refresh_failure_count,
            obj.total_failure_count,
        )

    @admin.display(description="last used", ordering="last_used_at")
    def last_used(self, obj: Credential) -> str:
        return short_time(obj.last_used_at)

    @admin.display(description="unknown keys kept for export")
    def unknown_keys(self, obj: Credential) -> str:
        # Names only: unknown keys may hold secrets of a newer kiro-rs.
        return ", ".join(sorted((obj.kiro_extra or {}).get("unknown", {}))) or "—"

    @method_decorator(sensitive_post_parameters())
    def changeform_view(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        return super().changeform_view(request, *args, **kwargs)

    @admin.action(description="Enable selected credentials", permissions=["change"])
    def enable(self, request: HttpRequest, queryset: QuerySet[Credential]) -> None:
        self._bulk(request, queryset, services.credential_enable, "Enabled")

    @admin.action(description="Disable selected credentials", permissions=["change"])
    def disable(self, request: HttpRequest, queryset: QuerySet[Credential]) -> None:
        self._bulk(request, queryset, services.credential_disable, "Disabled")

    @admin.action(description="Reset failure counters", permissions=["change"])
    def reset_failures(self, request: HttpRequest, queryset: QuerySet[Credential]) -> None:
        self._bulk(request, queryset, services.credential_reset_failures, "Reset failures of")

    def _bulk(
        self, request: HttpRequest, queryset: QuerySet[Credential], service: Any, verb: str
    ) -> None:
        objects = list(queryset)
        count = service(credential_ids=[c.pk for c in objects])
        for obj in objects:
            self.log_change(request, obj, f"{verb} (admin action)")
        self.message_user(request, f"{verb} {count} credential(s).", messages.SUCCESS)

    @admin.action(
        description="Export selected as kiro-rs credentials.json", permissions=["export_kiro"]
    )
    def export_selected(self, request: HttpRequest, queryset: QuerySet[Credential]) -> HttpResponse:
        ids = list(queryset.values_list("pk", flat=True))
        return download(
            dump_json(services.kiro_export_credentials(credential_ids=ids)), "credentials.json"
        )

    def has_export_kiro_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("credentials.export_kiro")

    def has_import_kiro_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("credentials.import_kiro")

    def changelist_view(
        self, request: HttpRequest, extra_context: dict | None = None
    ) -> HttpResponse:
        extra_context = {
            **(extra_context or {}),
            "can_import_kiro": self.has_import_kiro_permission(request),
            "can_export_kiro": self.has_export_kiro_permission(request),
            # Django's change list context has neither: the tool buttons need them.
            "has_change_permission": self.has_change_permission(request),
            "has_delete_permission": self.has_delete_permission(request),
        }
        return super().changelist_view(request, extra_context)

    def get_urls(self) -> list:
        # Each page module routes its own pages; Django's own (with their catch-all) come last.
        return [
            *self.kiro_file_urls(),
            *self.batch_import_urls(),
            *self.console_urls(),
            *self.login_urls(),
            *super().get_urls(),
        ]

    def save_model(self, request: HttpRequest, obj: Credential, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        if not change:
            # spec §8.1: the add flow fetches the balance right away. After the commit: the
            # operation reads the row from another thread and connection.
            transaction.on_commit(lambda: self._balance_after_add(request, obj.pk))

    def _balance_after_add(self, request: HttpRequest, credential_id: int) -> None:
        """Fetch a new credential's balance; a failure is a warning, the credential stays."""
        try:
            operations.run_sync(operations.check_balance, credential_id=credential_id, force=True)
        except operations.OperationError as exc:
            self.message_user(
                request,
                f"Credential #{credential_id} saved, but its balance could not be fetched: {exc}",
                messages.WARNING,
            )
