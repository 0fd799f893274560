"""The gateway settings row."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseRedirect,
)
from django.urls import reverse
from django.utils.decorators import method_decorator
from django.views.decorators.debug import sensitive_post_parameters

from credentials.admin.common import URL_FIELDS
from credentials.forms import (
    GatewaySettingsForm,
)
from credentials.models import (
    ROUND_TRIP_SETTINGS,
    GatewaySettings,
)


@admin.register(GatewaySettings)
class GatewaySettingsAdmin(admin.ModelAdmin):
    form = GatewaySettingsForm
    formfield_overrides = URL_FIELDS
    readonly_fields = [
        "updated_at",
        *(name for name in ROUND_TRIP_SETTINGS if name not in ("admin_api_key", "github_token")),
        "admin_api_key_kept",
        "github_token_kept",
    ]
    fieldsets = [
        ("Pool", {"fields": [
            "load_balancing_mode", "max_attempts_per_credential", "max_attempts_per_request",
            "account_throttle_failover", "account_throttle_cooldown_secs",
            "account_rpm_limit_enabled", "account_rpm_limit", "suspended_detection_enabled",
        ]}),
        ("Self-heal", {"fields": [
            "self_heal_enabled", "self_heal_min_interval_secs", "self_heal_max_consecutive_rounds",
        ]}),
        ("Upstream", {"fields": [
            "region", "auth_region", "api_region", "default_endpoint", "tls_backend",
            "kiro_version", "system_version", "node_version", "machine_id",
        ]}),
        ("Global proxy", {"fields": ["proxy_url", "proxy_username", "proxy_password"]}),
        ("Models and translation", {"fields": [
            "custom_models", "model_resolution", "fallback_model", "model_cache_ttl_secs",
            "extract_thinking", "tool_compatibility_mode", "stream_ping_interval_secs",
        ]}),
        ("Token counting and prompt cache", {"fields": [
            "count_tokens_api_url", "count_tokens_api_key", "count_tokens_auth_type",
            "prompt_cache_metering",
        ]}),
        ("Retention", {"fields": [
            "trace_enabled", "trace_retention_days", "usage_log_retention_days",
            "usage_record_retention_days",
        ]}),
        ("Kept only for the kiro-rs round trip (written back to config.json; this gateway does "
         "not act on them)", {"classes": ["collapse"], "fields": [
            "host", "port", "admin_api_key_kept", "github_token_kept", "endpoints",
            "update_auto_apply", "update_auto_apply_time", "update_previous_version",
            "update_last_applied_at", "updated_at",
        ]}),
    ]  # fmt: skip

    @admin.display(description="admin API key (kiro.rs)")
    def admin_api_key_kept(self, obj: GatewaySettings) -> str:
        return "set (kept for export)" if obj.admin_api_key else "not set"

    @admin.display(description="GitHub token (kiro.rs self-update)")
    def github_token_kept(self, obj: GatewaySettings) -> str:
        return "set (kept for export)" if obj.github_token else "not set"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def changelist_view(
        self, request: HttpRequest, extra_context: dict | None = None
    ) -> HttpResponse:
        GatewaySettings.load()
        return HttpResponseRedirect(
            reverse("admin:credentials_gatewaysettings_change", args=[GatewaySettings.singleton_id])
        )

    @method_decorator(sensitive_post_parameters())
    def changeform_view(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        return super().changeform_view(request, *args, **kwargs)
