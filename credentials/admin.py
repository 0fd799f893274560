"""Admin for operators: credentials, groups, client keys and the settings row.

Secrets never reach a page: list columns are computed from non-secret fields, change forms
take secrets write-only, search covers labels only, and filters on secret columns are refused.
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.models import ADDITION, CHANGE, LogEntry
from django.core.exceptions import PermissionDenied
from django.db import models
from django.db.models import Count, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.utils.html import format_html
from django.views.decorators.debug import sensitive_post_parameters

from credentials import crypto, services
from credentials.forms import CredentialForm, GatewaySettingsForm, KiroImportForm
from credentials.kiro_files import KiroFileError, dump_json
from credentials.models import ClientKey, Credential, CredentialGroup, GatewaySettings

_SECRET_LOOKUPS = (
    "refresh_token",
    "access_token",
    "client_secret",
    "kiro_api_key",
    "proxy_password",
    "key_hash",
    "api_key",
    "admin_api_key",
    "github_token",
)
_IMPORT_SESSION_KEY = "kiro_import_pending"


# Django 6 assumes https for scheme-less URLs; say so now so 5.2 and 6 behave alike.
_URL_FIELDS = {models.URLField: {"assume_scheme": "https"}}


class NoSecretLookupsMixin:
    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest | None = None) -> bool:
        if any(lookup.startswith(name) for name in _SECRET_LOOKUPS):
            return False
        return super().lookup_allowed(lookup, value, request)  # type: ignore[misc]


def _download(text: str, filename: str) -> HttpResponse:
    response = HttpResponse(text, content_type="application/json; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["Cache-Control"] = "no-store"
    return response


@admin.register(Credential)
class CredentialAdmin(NoSecretLookupsMixin, admin.ModelAdmin):
    form = CredentialForm
    formfield_overrides = _URL_FIELDS
    change_list_template = "admin/credentials/credential/change_list.html"
    list_display = [
        "id", "label", "status", "auth_method", "priority", "group_names", "expires_at",
        "email", "subscription_title", "failures", "disabled_reason", "last_used_at",
    ]  # fmt: skip
    list_display_links = ["id", "label"]
    list_filter = [
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
    actions = ["enable", "disable", "reset_failures", "export_selected"]
    readonly_fields = [
        "enabled", "disabled_reason", "failure_count", "refresh_failure_count",
        "total_failure_count", "success_count", "last_used_at", "cooldown_until",
        "self_heal_rounds", "self_heal_total", "last_self_heal_at", "self_heal_model",
        "kiro_created_at", "created_at", "updated_at", "unknown_keys",
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
        ("Account", {"fields": ["email", "subscription_title", "source_channel"]}),
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

    def get_queryset(self, request: HttpRequest) -> QuerySet[Credential]:
        return super().get_queryset(request).prefetch_related("groups")

    @admin.display(description="label", ordering="name")
    def label(self, obj: Credential) -> str:
        return obj.name or obj.email or obj.provider or "—"

    @admin.display(description="status", ordering="enabled")
    def status(self, obj: Credential) -> str:
        if not obj.enabled:
            text, color = "disabled", "#ba2121"
        elif obj.cooldown_until and obj.cooldown_until > timezone.now():
            text, color = "cooling down", "#b36b00"
        else:
            text, color = "enabled", "#2a7d2a"
        return format_html('<span style="color:{}">{}</span>', color, text)

    @admin.display(description="groups")
    def group_names(self, obj: Credential) -> str:
        return ", ".join(g.name for g in obj.groups.all()) or "—"

    @admin.display(description="failures (consecutive / refresh / total)")
    def failures(self, obj: Credential) -> str:
        return f"{obj.failure_count} / {obj.refresh_failure_count} / {obj.total_failure_count}"

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
        return _download(
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
        }
        return super().changelist_view(request, extra_context)

    def get_urls(self) -> list:
        wrap = self.admin_site.admin_view
        return [
            path("import-kiro/", wrap(self.import_view), name="credentials_kiro_import"),
            path(
                "export-kiro/<str:which>.json",
                wrap(self.export_view),
                name="credentials_kiro_export",
            ),
            *super().get_urls(),
        ]

    def export_view(self, request: HttpRequest, which: str) -> HttpResponse:
        if not self.has_export_kiro_permission(request):
            raise PermissionDenied
        if which == "credentials":
            text = dump_json(services.kiro_export_credentials())
        elif which == "config":
            text = dump_json(services.kiro_export_config())
        else:
            return HttpResponse(status=404)
        return _download(text, f"{which}.json")

    @method_decorator(sensitive_post_parameters())
    def import_view(self, request: HttpRequest) -> HttpResponse:
        """Upload kiro-rs files, preview the plan, then confirm; one transaction."""
        if not self.has_import_kiro_permission(request):
            raise PermissionDenied
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Import kiro-rs files",
        }
        if request.method == "POST" and "confirm" in request.POST:
            return self._import_confirm(request)
        if request.method == "POST" and "cancel" in request.POST:
            request.session.pop(_IMPORT_SESSION_KEY, None)
            return HttpResponseRedirect(reverse("admin:credentials_kiro_import"))
        form = KiroImportForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            files = {
                "config_text": form.cleaned_data.get("config_text"),
                "credentials_text": form.cleaned_data.get("credentials_text"),
                "config_name": form.cleaned_data.get("config_name") or "config.json",
                "credentials_name": form.cleaned_data.get("credentials_name") or "credentials.json",
            }
            try:
                plan = services.kiro_import_plan(**files)
            except KiroFileError as exc:
                form.add_error(None, f"Nothing imported: {exc}")
            else:
                # The pending files hold secrets: keep them encrypted in the session.
                request.session[_IMPORT_SESSION_KEY] = crypto.encrypt(json.dumps(files))
                context.update(plan=plan, title="Confirm kiro-rs import")
                return TemplateResponse(
                    request, "admin/credentials/kiro_import_preview.html", context
                )
        context["form"] = form
        return TemplateResponse(request, "admin/credentials/kiro_import.html", context)

    def _import_confirm(self, request: HttpRequest) -> HttpResponse:
        pending = request.session.pop(_IMPORT_SESSION_KEY, None)
        if not pending:
            self.message_user(
                request, "The import expired; upload the files again.", messages.WARNING
            )
            return HttpResponseRedirect(reverse("admin:credentials_kiro_import"))
        try:
            plan = services.kiro_import_plan(**json.loads(crypto.decrypt(pending)))
            services.kiro_import_apply(plan=plan)
        except KiroFileError as exc:
            self.message_user(request, f"Nothing imported: {exc}", messages.ERROR)
            return HttpResponseRedirect(reverse("admin:credentials_kiro_import"))
        _log_import(request, plan)
        self.message_user(
            request,
            f"Imported kiro-rs files: {plan.created} credential(s) created, {plan.updated} "
            f"updated"
            + (", settings replaced" if plan.settings_values is not None else "")
            + (", system client key set from apiKey" if plan.system_key else "")
            + ".",
            messages.SUCCESS,
        )
        return HttpResponseRedirect(reverse("admin:credentials_credential_changelist"))


def _log_import(request: HttpRequest, plan: services.ImportPlan) -> None:
    """Record the import in Django's admin history, one entry per changed object."""
    for action, flag in (("create", ADDITION), ("update", CHANGE)):
        ids = [item.credential_id for item in plan.items if item.action == action]
        if ids:
            LogEntry.objects.log_actions(
                user_id=request.user.pk,
                queryset=Credential.objects.filter(pk__in=ids),
                action_flag=flag,
                change_message=f"Imported from kiro-rs credentials.json ({action})",
            )
    if plan.settings_values is not None:
        LogEntry.objects.log_actions(
            user_id=request.user.pk,
            queryset=GatewaySettings.objects.all(),
            action_flag=CHANGE,
            change_message="Imported from kiro-rs config.json: "
            + ", ".join(sorted(plan.settings_values)),
        )


@admin.register(CredentialGroup)
class CredentialGroupAdmin(admin.ModelAdmin):
    list_display = ["name", "description", "credential_count", "client_key_count", "created_at"]
    search_fields = ["name", "description"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[CredentialGroup]:
        return (
            super()
            .get_queryset(request)
            .annotate(
                n_credentials=Count("credentials", distinct=True),
                n_keys=Count("client_keys", distinct=True),
            )
        )

    @admin.display(description="credentials", ordering="n_credentials")
    def credential_count(self, obj: CredentialGroup) -> int:
        return obj.n_credentials  # type: ignore[attr-defined]

    @admin.display(description="client keys", ordering="n_keys")
    def client_key_count(self, obj: CredentialGroup) -> int:
        return obj.n_keys  # type: ignore[attr-defined]


@admin.register(ClientKey)
class ClientKeyAdmin(NoSecretLookupsMixin, admin.ModelAdmin):
    list_display = ["name", "masked", "group", "enabled", "is_system", "created_at", "last_used_at"]
    list_filter = ["enabled", "is_system", "group"]
    search_fields = ["name", "description", "prefix"]
    list_select_related = ["group"]
    fields = [
        "name",
        "description",
        "group",
        "enabled",
        "masked",
        "is_system",
        "created_at",
        "last_used_at",
    ]
    readonly_fields = ["masked", "is_system", "created_at", "last_used_at"]
    actions = ["enable", "disable"]

    @admin.display(description="key")
    def masked(self, obj: ClientKey) -> str:
        return f"{obj.prefix}…" if obj.prefix else "(assigned on save)"

    def has_delete_permission(self, request: HttpRequest, obj: ClientKey | None = None) -> bool:
        if obj is not None and obj.is_system:
            return False  # spec kiro-ops §4.2: the system key cannot be deleted
        return super().has_delete_permission(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[ClientKey]) -> None:
        super().delete_queryset(request, queryset.exclude(is_system=True))

    def save_model(self, request: HttpRequest, obj: ClientKey, form: Any, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        created, plaintext = services.client_key_create(
            name=obj.name, description=obj.description, group=obj.group
        )
        if not obj.enabled:
            ClientKey.objects.filter(pk=created.pk).update(enabled=False)
        obj.pk, obj.prefix, obj.key_hash = created.pk, created.prefix, created.key_hash
        obj._state.adding = False
        request._new_client_key = plaintext  # type: ignore[attr-defined]

    def response_add(
        self, request: HttpRequest, obj: ClientKey, post_url_continue: str | None = None
    ) -> HttpResponse:
        plaintext = getattr(request, "_new_client_key", None)
        if plaintext is None:
            return super().response_add(request, obj, post_url_continue)
        return self._show_plaintext(request, obj, plaintext, "Client key created")

    def _show_plaintext(
        self, request: HttpRequest, obj: ClientKey, plaintext: str, title: str
    ) -> HttpResponse:
        """Render the key once; it is not stored and cannot be shown again."""
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": title,
            "key": obj,
            "plaintext": plaintext,
        }
        response = TemplateResponse(request, "admin/credentials/clientkey/plaintext.html", context)
        response["Cache-Control"] = "no-store"
        return response

    def get_urls(self) -> list:
        wrap = self.admin_site.admin_view
        return [
            path("<int:pk>/rotate/", wrap(self.rotate_view), name="credentials_clientkey_rotate"),
            *super().get_urls(),
        ]

    def rotate_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        """Give a key a new secret (POST); the old one stops working at once."""
        key = get_object_or_404(ClientKey, pk=pk)
        if not self.has_change_permission(request, key):
            raise PermissionDenied
        if request.method != "POST":
            context = {
                **self.admin_site.each_context(request),
                "opts": self.model._meta,
                "title": f"Rotate {key.name}?",
                "key": key,
            }
            return TemplateResponse(
                request, "admin/credentials/clientkey/rotate_confirm.html", context
            )
        plaintext = services.client_key_rotate(key=key)
        self.log_change(request, key, "Rotated the key (admin)")
        return self._show_plaintext(request, key, plaintext, "Client key rotated")

    @admin.action(description="Enable selected keys", permissions=["change"])
    def enable(self, request: HttpRequest, queryset: QuerySet[ClientKey]) -> None:
        for key in queryset:
            self.log_change(request, key, "Enabled (admin action)")
        count = queryset.update(enabled=True)
        self.message_user(request, f"Enabled {count} key(s).", messages.SUCCESS)

    @admin.action(description="Disable selected keys", permissions=["change"])
    def disable(self, request: HttpRequest, queryset: QuerySet[ClientKey]) -> None:
        for key in queryset:
            self.log_change(request, key, "Disabled (admin action)")
        count = queryset.update(enabled=False)
        self.message_user(request, f"Disabled {count} key(s).", messages.SUCCESS)


@admin.register(GatewaySettings)
class GatewaySettingsAdmin(admin.ModelAdmin):
    form = GatewaySettingsForm
    formfield_overrides = _URL_FIELDS
    readonly_fields = ["updated_at"]
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
            "custom_models", "model_cache_ttl_secs", "extract_thinking", "tool_compatibility_mode",
            "stream_ping_interval_secs",
        ]}),
        ("count_tokens", {"fields": [
            "count_tokens_api_url", "count_tokens_api_key", "count_tokens_auth_type",
        ]}),
        ("Retention", {"fields": [
            "trace_enabled", "trace_retention_days", "usage_log_retention_days",
        ]}),
        ("kiro-rs interchange (kept for config.json export)", {"classes": ["collapse"], "fields": [
            "host", "port", "admin_api_key", "github_token", "endpoints",
            "update_auto_apply", "update_auto_apply_time", "update_previous_version",
            "update_last_applied_at", "updated_at",
        ]}),
    ]  # fmt: skip

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
