"""Admin for operators: credentials, groups, client keys and the settings row.

Secrets never reach a page: list columns are computed from non-secret fields, change forms
take secrets write-only, search covers labels only, and filters on secret columns are refused.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.models import ADDITION, CHANGE, DELETION, LogEntry
from django.core.exceptions import PermissionDenied
from django.db import models, transaction
from django.db.models import Count, QuerySet
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseRedirect,
    JsonResponse,
    StreamingHttpResponse,
)
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.utils.html import format_html
from django.views.decorators.debug import sensitive_post_parameters

from credentials import (  # admin views are the console; they call gateway's I/O
    batch_import,
    crypto,
    limits,
    login,
    operations,
    services,
)
from credentials.asyncdb import db
from credentials.forms import (
    AssignProxyForm,
    CredentialConsoleForm,
    GatewaySettingsForm,
    GroupEditForm,
    IdcLoginForm,
    KiroImportForm,
    ModelTestForm,
    ProxyBulkAddForm,
    ProxyEntryForm,
    SocialCompleteForm,
    SocialLoginForm,
)
from credentials.kiro_files import KiroFileError, dump_json
from credentials.models import (
    ClientKey,
    ClientKeyWindow,
    Credential,
    CredentialGroup,
    GatewaySettings,
    JobLock,
    LimitWindowKind,
    ProxyEntry,
)

log = logging.getLogger(__name__)

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
BATCH_IMPORT_TEMPLATE = "admin/credentials/credential/batch_import.html"
LOGIN_TEMPLATE = "admin/credentials/credential/login.html"
LOGIN_SESSION_TEMPLATE = "admin/credentials/credential/login_session.html"


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
    form = CredentialConsoleForm
    formfield_overrides = _URL_FIELDS
    change_list_template = "admin/credentials/credential/ops_change_list.html"
    list_display = [
        "id", "label", "status", "auth_method", "priority", "group_names", "expires_at",
        "email", "subscription_title", "balance_column", "overage_column", "failures",
        "disabled_reason", "last_used_at",
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
            # Django's change list context has neither: the tool buttons need them.
            "has_change_permission": self.has_change_permission(request),
            "has_delete_permission": self.has_delete_permission(request),
        }
        return super().changelist_view(request, extra_context)

    def get_urls(self) -> list:
        wrap = self.admin_site.admin_view
        return [
            path("import-kiro/", wrap(self.import_view), name="credentials_kiro_import"),
            path(
                "batch-import/",
                wrap(self.batch_import_view),
                name="credentials_credential_batch_import",
            ),
            *self._ops_urls(),
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

    @method_decorator(sensitive_post_parameters())
    def batch_import_view(self, request: HttpRequest) -> HttpResponse:
        """Import pasted/uploaded credential arrays or KAM exports; report each item (#118-#123)."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        context = self._ops_context(request, None, "Batch import accounts")
        if request.method != "POST":
            return TemplateResponse(request, BATCH_IMPORT_TEMPLATE, context)
        texts = _batch_texts(request)
        if not texts:
            context["error"] = "Paste JSON or choose at least one file."
            return TemplateResponse(request, BATCH_IMPORT_TEMPLATE, context)
        outcomes = services.credential_batch_import(
            items=batch_import.parse_batch(texts),
            include_errored=bool(request.POST.get("include_errored")),
        )
        created = [o.credential_id for o in outcomes if o.credential_id]
        if created:
            LogEntry.objects.log_actions(
                user_id=request.user.pk,
                queryset=Credential.objects.filter(pk__in=created),
                action_flag=ADDITION,
                change_message="Batch imported (admin)",
            )
        if created and request.POST.get("verify"):
            checks = operations.run_sync(operations.verify, credential_ids=created)
            failed = [c.credential_id for c in checks if not c.ok]
            if failed:
                self.log_deletions(request, Credential.objects.filter(pk__in=failed))
                services.credential_delete(credential_ids=failed)
            outcomes = batch_import.apply_verification(
                outcomes, {c.credential_id: (c.ok, c.detail) for c in checks}
            )
        context.update(outcomes=outcomes, summary=batch_import.summarise(outcomes))
        return TemplateResponse(request, BATCH_IMPORT_TEMPLATE, context)

    @method_decorator(sensitive_post_parameters())
    def batch_import_stream_view(self, request: HttpRequest) -> HttpResponse:
        """Import like `batch_import_view`, streaming one SSE event per item (spec §6.3)."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        if request.method != "POST":
            return HttpResponse(status=405)
        texts = _batch_texts(request)
        if not texts:
            return JsonResponse({"error": "Paste JSON or choose at least one file."}, status=400)
        events = batch_import_events(
            items=batch_import.parse_batch(texts),
            include_errored=bool(request.POST.get("include_errored")),
            verify=bool(request.POST.get("verify")),
            user_id=request.user.pk,
        )
        response = StreamingHttpResponse(events, content_type="text/event-stream")
        response["Cache-Control"] = "no-cache"
        response["X-Accel-Buffering"] = "no"
        return response

    # --- operator console: balance, token, models, overage, bulk edits (spec kiro-ops §8) ---

    @admin.display(description="balance (used / limit)")
    def balance_column(self, obj: Credential) -> str:
        balance = obj.balance if isinstance(obj.balance, dict) else None
        if not balance:
            return "—"
        exhausted = services.credential_balance_exhausted(balance)
        return format_html(
            '<span style="color:{}" title="remaining {}; checked {}">{} / {} ({}%)</span>',
            "#ba2121" if exhausted else "inherit",
            _num(balance.get("remaining")),
            obj.balance_checked_at.strftime("%Y-%m-%d %H:%M") if obj.balance_checked_at else "?",
            _num(balance.get("current_usage")),
            _num(balance.get("usage_limit")),
            _num(balance.get("usage_percentage")),
        )

    @admin.display(description="overage")
    def overage_column(self, obj: Credential) -> str:
        # spec kiro-ops #135: enabled / disabled / not supported / unknown
        if obj.overage_capability in ("NOT_OVERAGE_CAPABLE", "NOT_AVAILABLE"):
            return "not supported"
        if obj.overage_status == "ENABLED":
            return "enabled"
        if obj.overage_status == "DISABLED":
            return "disabled"
        return "unknown"

    @admin.display(description="balance")
    def balance_summary(self, obj: Credential) -> str:
        balance = obj.balance if isinstance(obj.balance, dict) else None
        if not balance:
            return "not checked yet"
        reset = balance.get("next_reset_at")
        reset_text = (
            datetime.fromtimestamp(reset, tz=UTC).strftime("%Y-%m-%d")
            if isinstance(reset, int | float) and reset > 0
            else "unknown"
        )
        return format_html(
            "{}: {} of {} used ({}%), {} remaining; next reset {}; checked {}",
            balance.get("subscription_title") or "unknown plan",
            _num(balance.get("current_usage")),
            _num(balance.get("usage_limit")),
            _num(balance.get("usage_percentage")),
            _num(balance.get("remaining")),
            reset_text,
            obj.balance_checked_at.strftime("%Y-%m-%d %H:%M:%S") if obj.balance_checked_at else "?",
        )

    def _ops_urls(self) -> list:
        wrap = self.admin_site.admin_view
        return [
            path(
                "<int:object_id>/refresh-token/",
                wrap(self.refresh_token_view),
                name="credentials_credential_refresh_token",
            ),
            path(
                "<int:object_id>/balance/",
                wrap(self.balance_view),
                name="credentials_credential_balance",
            ),
            path(
                "<int:object_id>/models/",
                wrap(self.models_view),
                name="credentials_credential_models",
            ),
            path(
                "<int:object_id>/test-model/",
                wrap(self.test_model_view),
                name="credentials_credential_test_model",
            ),
            path(
                "<int:object_id>/overage/<str:state>/",
                wrap(self.overage_view),
                name="credentials_credential_overage",
            ),
            path(
                "clear-disabled/",
                wrap(self.clear_disabled_view),
                name="credentials_credential_clear_disabled",
            ),
            path(
                "overage-all/",
                wrap(self.overage_all_view),
                name="credentials_credential_overage_all",
            ),
            path(
                "batch-import/stream/",
                wrap(self.batch_import_stream_view),
                name="credentials_credential_batch_import_stream",
            ),
            path("login/", wrap(self.login_view), name="credentials_credential_login"),
            path(
                "<int:object_id>/relogin/",
                wrap(self.relogin_view),
                name="credentials_credential_relogin",
            ),
            path(
                "login/<str:sid>/",
                wrap(self.login_session_view),
                name="credentials_credential_login_session",
            ),
            path(
                "login/<str:sid>/poll/",
                wrap(self.login_poll_view),
                name="credentials_credential_login_poll",
            ),
            path(
                "login/<str:sid>/complete/",
                wrap(self.login_complete_view),
                name="credentials_credential_login_complete",
            ),
        ]

    def _ops_object(self, request: HttpRequest, object_id: int) -> Credential:
        """Return the credential if the user may run operations on it, else raise 403."""
        obj = get_object_or_404(Credential, pk=object_id)
        if not self.has_change_permission(request, obj):
            raise PermissionDenied
        return obj

    def _ops_context(self, request: HttpRequest, obj: Credential | None, title: str) -> dict:
        return {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "original": obj,
            "title": title,
        }

    def _back(self, obj: Credential) -> HttpResponseRedirect:
        return HttpResponseRedirect(reverse("admin:credentials_credential_change", args=[obj.pk]))

    def refresh_token_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        """Force a token refresh of one credential (POST)."""
        obj = self._ops_object(request, object_id)
        if request.method != "POST":
            return HttpResponse(status=405)
        self._refresh_one(request, obj)
        return self._back(obj)

    def balance_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        """Check one credential's balance (POST; cached 5 minutes)."""
        obj = self._ops_object(request, object_id)
        if request.method != "POST":
            return HttpResponse(status=405)
        self._balance_one(request, obj, force="force" in request.POST)
        return self._back(obj)

    def overage_view(self, request: HttpRequest, object_id: int, state: str) -> HttpResponse:
        """Switch overage on or off for one credential (POST)."""
        obj = self._ops_object(request, object_id)
        if request.method != "POST" or state not in ("on", "off"):
            return HttpResponse(status=405)
        self._overage_one(request, obj, state == "on")
        return self._back(obj)

    def models_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        """List the models this credential may call, live from ListAvailableModels."""
        obj = self._ops_object(request, object_id)
        context = self._ops_context(request, obj, f"Available models of {obj}")
        try:
            context["models"] = operations.run_sync(operations.list_models, credential_id=obj.pk)
        except operations.OperationError as exc:
            context["error"] = str(exc)
        else:
            self.log_change(request, obj, "Listed available models (admin)")
        return TemplateResponse(request, "admin/credentials/credential/models.html", context)

    def test_model_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        """Send one minimal real request to a chosen model as this credential (spec §8.3)."""
        obj = self._ops_object(request, object_id)
        context = self._ops_context(request, obj, f"Test a model as {obj}")
        models = list(obj.available_models or [])
        if not models:
            try:
                infos = operations.run_sync(operations.list_models, credential_id=obj.pk)
                models = sorted({m.model_id for m in infos})
            except operations.OperationError as exc:
                context["error"] = f"Could not list models: {exc}"
        form = ModelTestForm(request.POST or None, models=models)
        if request.method == "POST" and form.is_valid():
            result = operations.run_sync(
                operations.test_model, credential_id=obj.pk, model=form.cleaned_data["model"]
            )
            context["result"] = result
            self.log_change(
                request,
                obj,
                f"Tested model {result.model}: {'ok' if result.ok else 'failed'} "
                f"in {result.latency_ms} ms (admin)",
            )
        context["form"] = form
        status = 502 if context.get("result") is not None and not context["result"].ok else 200
        return TemplateResponse(
            request, "admin/credentials/credential/test_model.html", context, status=status
        )

    def clear_disabled_view(self, request: HttpRequest) -> HttpResponse:
        """Delete every disabled credential after a confirmation page (spec #124)."""
        if not self.has_delete_permission(request):
            raise PermissionDenied
        disabled = list(Credential.objects.filter(enabled=False).order_by("pk"))
        if request.method == "POST":
            self.log_deletions(request, Credential.objects.filter(enabled=False))
            ids = services.credential_delete_disabled()
            self.message_user(
                request, f"Deleted {len(ids)} disabled credential(s).", messages.SUCCESS
            )
            return HttpResponseRedirect(reverse("admin:credentials_credential_changelist"))
        context = self._ops_context(request, None, "Delete all disabled credentials?")
        context["credentials"] = disabled
        return TemplateResponse(
            request, "admin/credentials/credential/clear_disabled.html", context
        )

    def overage_all_view(self, request: HttpRequest) -> HttpResponse:
        """Enable overage on every enabled, capable credential where it is off (POST, #134)."""
        if not self.has_change_permission(request):
            raise PermissionDenied
        if request.method != "POST":
            return HttpResponse(status=405)
        candidates: dict[int, Credential] = {}
        already = not_capable = 0
        for obj in Credential.objects.filter(enabled=True).order_by("pk"):
            if obj.overage_status == "ENABLED":
                already += 1
            elif obj.overage_capability in ("NOT_OVERAGE_CAPABLE", "NOT_AVAILABLE"):
                not_capable += 1
            else:  # capable, or not known yet: the operation checks the balance first
                candidates[obj.pk] = obj
        outcomes = operations.run_sync(
            operations.enable_overage_all, credential_ids=list(candidates)
        )
        failed = []
        enabled = 0
        for outcome in outcomes:
            if outcome.outcome == "enabled":
                enabled += 1
                self.log_change(
                    request, candidates[outcome.credential_id], "Set overage ENABLED (admin, all)"
                )
            elif outcome.outcome == "already_enabled":
                already += 1
            elif outcome.outcome == "not_capable":
                not_capable += 1
            else:
                failed.append(f"{candidates[outcome.credential_id]}: {outcome.detail}")
        self.message_user(
            request,
            f"Enabled overage on {enabled} credential(s); skipped {already + not_capable} "
            f"({already} already enabled, {not_capable} not overage-capable). Disabled "
            "credentials were not considered.",
            messages.SUCCESS,
        )
        for line in failed:
            self.message_user(request, f"Overage not enabled for {line}", messages.WARNING)
        return HttpResponseRedirect(reverse("admin:credentials_credential_changelist"))

    # --- login flows (spec kiro-ops §8.4) ---

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

    @method_decorator(sensitive_post_parameters())
    def login_view(self, request: HttpRequest) -> HttpResponse:
        """Add a credential by IdC device-code or Social login (operators only)."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        return self._login_start(request, None)

    @method_decorator(sensitive_post_parameters())
    def relogin_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        """Log an existing credential in again, keeping its id, priority, groups and email."""
        obj = self._ops_object(request, object_id)
        if obj.auth_method not in ("social", "idc"):
            self.message_user(
                request, "Only Social and IdC credentials can log in again.", messages.ERROR
            )
            return self._back(obj)
        return self._login_start(request, obj)

    def _login_start(self, request: HttpRequest, obj: Credential | None) -> HttpResponse:
        relogin = obj is not None
        flow = request.POST.get("flow") if request.method == "POST" else None
        idc_initial = {}
        if obj is not None and obj.auth_method == "idc":
            idc_initial = {
                "start_url": obj.start_url or login.BUILDER_ID_START_URL,
                "region": obj.auth_region or obj.region or login.DEFAULT_REGION,
            }
        idc_form = IdcLoginForm(
            request.POST if flow == "idc" else None, relogin=relogin, initial=idc_initial
        )
        social_form = SocialLoginForm(request.POST if flow == "social" else None, relogin=relogin)
        title = f"Log {obj} in again" if obj else "Add a credential by login"
        context = self._ops_context(request, obj, title)
        context.update(idc_form=idc_form, social_form=social_form, relogin=relogin)
        started = None
        if flow == "social" and obj is not None and obj.auth_method != "social":
            flow = None  # an IdC credential keeps its client registration: device code only
            context["error"] = "Only a Social credential can log in again by Social login."
        try:
            if flow == "idc" and idc_form.is_valid():
                data = idc_form.cleaned_data
                started = login.idc_start(
                    user_id=request.user.pk,
                    start_url=data["start_url"],
                    region=data["region"],
                    priority=data.get("priority"),
                    email=data.get("email") or "",
                    proxy_url=data.get("proxy_url") or "",
                    credential_id=obj.pk if obj else None,
                )
            elif flow == "social" and social_form.is_valid():
                data = social_form.cleaned_data
                started = login.social_start(
                    user_id=request.user.pk,
                    priority=data.get("priority"),
                    email=data.get("email") or "",
                    proxy_url=data.get("proxy_url") or "",
                    credential_id=obj.pk if obj else None,
                )
        except login.LoginError as exc:
            context["error"] = str(exc)
        if started is not None:
            return HttpResponseRedirect(
                reverse("admin:credentials_credential_login_session", args=[started.sid])
            )
        return TemplateResponse(request, LOGIN_TEMPLATE, context)

    def _login_page(self, request: HttpRequest, sid: str) -> login.LoginPage | None:
        """Return the user's live session, checking the permission its purpose needs."""
        found = login.page(sid=sid, user_id=request.user.pk)
        if found is None:
            if not (self.has_add_permission(request) or self.has_change_permission(request)):
                raise PermissionDenied
            return None
        if found.credential_id is None:
            if not self.has_add_permission(request):
                raise PermissionDenied
        else:
            self._ops_object(request, found.credential_id)
        return found

    def login_session_view(self, request: HttpRequest, sid: str) -> HttpResponse:
        """Show a running login: the device code and link, or the social sign-in URL."""
        found = self._login_page(request, sid)
        return self._render_session(request, sid, found)

    def _render_session(
        self,
        request: HttpRequest,
        sid: str,
        found: login.LoginPage | None,
        *,
        error: str = "",
        form: SocialCompleteForm | None = None,
        status: int = 200,
    ) -> HttpResponse:
        obj = Credential.objects.filter(pk=found.credential_id).first() if found else None
        context = self._ops_context(request, obj, "Log in")
        context.update(
            session=found,
            sid=sid,
            error=error or ("" if found else "This login session has expired; start again."),
            complete_form=form or SocialCompleteForm(),
            poll_url=reverse("admin:credentials_credential_login_poll", args=[sid]),
            complete_url=reverse("admin:credentials_credential_login_complete", args=[sid]),
            restart_url=reverse("admin:credentials_credential_relogin", args=[obj.pk])
            if obj
            else reverse("admin:credentials_credential_login"),
        )
        response = TemplateResponse(request, LOGIN_SESSION_TEMPLATE, context, status=status)
        response["Cache-Control"] = "no-store"
        return response

    def login_poll_view(self, request: HttpRequest, sid: str) -> HttpResponse:
        """Make one device-code token call (POST) and answer JSON for the page's script."""
        if request.method != "POST":
            return HttpResponse(status=405)
        found = self._login_page(request, sid)
        if found is None:
            result = login.expired("idc")
        elif found.kind != "idc":
            return JsonResponse({"status": "error", "message": "Not a device login."}, status=400)
        else:
            result = login.idc_poll(sid=sid, user_id=request.user.pk)
        payload = self._login_outcome(request, result)
        after = login.page(sid=sid, user_id=request.user.pk)  # slow_down lengthens it
        payload["interval"] = after.interval if after else None
        if "html" in request.POST:  # the no-script "Check now" button
            if result.status == "done" and result.credential_id:
                return HttpResponseRedirect(payload["credentialUrl"])
            if result.status == "pending":
                self.message_user(request, result.message, messages.INFO)
                return HttpResponseRedirect(
                    reverse("admin:credentials_credential_login_session", args=[sid])
                )
            return self._render_session(request, sid, None, error=result.message, status=400)
        return JsonResponse(payload, headers={"Cache-Control": "no-store"})

    @method_decorator(sensitive_post_parameters())
    def login_complete_view(self, request: HttpRequest, sid: str) -> HttpResponse:
        """Finish a Social login from the pasted redirect URL (POST)."""
        if request.method != "POST":
            return HttpResponse(status=405)
        found = self._login_page(request, sid)
        form = SocialCompleteForm(request.POST)
        if found is None or found.kind != "social":
            return self._render_session(request, sid, None, status=400)
        if not form.is_valid():
            return self._render_session(request, sid, found, form=form, status=400)
        result = login.social_complete(
            sid=sid, user_id=request.user.pk, redirect_url=form.cleaned_data["redirect_url"]
        )
        payload = self._login_outcome(request, result)
        if result.status == "done":
            return HttpResponseRedirect(payload["credentialUrl"])
        # A state mismatch keeps the session: the page stays usable for the right URL.
        still = login.page(sid=sid, user_id=request.user.pk)
        return self._render_session(
            request, sid, still, error=result.message, form=SocialCompleteForm(), status=400
        )

    def _login_outcome(self, request: HttpRequest, result: login.LoginResult) -> dict[str, Any]:
        """Audit a finished login, queue its messages, and return the JSON-safe outcome."""
        payload: dict[str, Any] = {"status": result.status, "message": result.message}
        if result.status != "done" or result.credential_id is None:
            return payload
        obj = Credential.objects.get(pk=result.credential_id)
        if result.created:
            self.log_addition(request, obj, f"Added by {obj.auth_method} login (admin)")
        else:
            self.log_change(request, obj, f"Re-logged in by {obj.auth_method} login (admin)")
        self.message_user(request, f"{obj}: {result.message}", messages.SUCCESS)
        if result.warning:
            self.message_user(request, f"{obj}: {result.warning}", messages.WARNING)
        payload.update(
            credentialId=obj.pk,
            credentialUrl=reverse("admin:credentials_credential_change", args=[obj.pk]),
            warning=result.warning,
        )
        return payload

    # One credential at a time; each reports through message_user and logs to the history.

    def _refresh_one(self, request: HttpRequest, obj: Credential) -> bool:
        try:
            expiry = operations.run_sync(operations.refresh_token, credential_id=obj.pk)
        except operations.OperationError as exc:
            self.message_user(request, f"{obj}: {exc}", messages.ERROR)
            return False
        self.log_change(request, obj, "Refreshed the token (admin)")
        self.message_user(request, f"{obj}: token refreshed, expires {expiry}.", messages.SUCCESS)
        return True

    def _balance_one(self, request: HttpRequest, obj: Credential, *, force: bool = False) -> bool:
        try:
            result = operations.run_sync(
                operations.check_balance, credential_id=obj.pk, force=force
            )
        except operations.OperationError as exc:
            self.message_user(request, f"{obj}: balance check failed: {exc}", messages.ERROR)
            return False
        b = result.balance
        self.log_change(request, obj, "Checked the balance (admin)")
        self.message_user(
            request,
            f"{obj}: {b['subscription_title'] or 'unknown plan'}, {_num(b['current_usage'])} / "
            f"{_num(b['usage_limit'])} used ({_num(b['usage_percentage'])}%), "
            f"{_num(b['remaining'])} remaining" + (" (cached)" if result.cached else ""),
            messages.SUCCESS,
        )
        return True

    def _overage_one(self, request: HttpRequest, obj: Credential, enabled: bool) -> bool:
        try:
            status = operations.run_sync(
                operations.set_overage, credential_id=obj.pk, enabled=enabled
            )
        except operations.OperationError as exc:
            self.message_user(request, f"{obj}: overage not changed: {exc}", messages.WARNING)
            return False
        self.log_change(request, obj, f"Set overage {status} (admin)")
        self.message_user(request, f"{obj}: overage {status.lower()}.", messages.SUCCESS)
        return True

    @admin.action(description="Refresh token now", permissions=["change"])
    def refresh_token_now(self, request: HttpRequest, queryset: QuerySet[Credential]) -> None:
        for obj in queryset:
            self._refresh_one(request, obj)

    @admin.action(description="Check balance (cached 5 minutes)", permissions=["change"])
    def check_balance(self, request: HttpRequest, queryset: QuerySet[Credential]) -> None:
        for obj in queryset:
            self._balance_one(request, obj)

    @admin.action(description="Enable overage (where supported)", permissions=["change"])
    def overage_on(self, request: HttpRequest, queryset: QuerySet[Credential]) -> None:
        for obj in queryset:
            if obj.overage_status == "ENABLED":
                continue  # spec #134: "enable for all" skips those already enabled
            self._overage_one(request, obj, True)

    @admin.action(description="Disable overage", permissions=["change"])
    def overage_off(self, request: HttpRequest, queryset: QuerySet[Credential]) -> None:
        for obj in queryset:
            self._overage_one(request, obj, False)

    @admin.action(description="Verify (live balance check) …", permissions=["change"])
    def bulk_verify(
        self, request: HttpRequest, queryset: QuerySet[Credential]
    ) -> HttpResponse | None:
        if "delete_failures" in request.POST:
            if not self.has_delete_permission(request):
                raise PermissionDenied
            objects = list(queryset)
            self.log_deletions(request, queryset)
            count = services.credential_delete(credential_ids=[o.pk for o in objects])
            self.message_user(
                request,
                f"Deleted {count} credential(s) that failed verification.",
                messages.SUCCESS,
            )
            return None
        objects = {o.pk: o for o in queryset}
        items = operations.run_sync(operations.verify, credential_ids=list(objects))
        for item in items:
            self.log_change(
                request,
                objects[item.credential_id],
                f"Verified: {'ok' if item.ok else 'failed'} (admin)",
            )
        context = self._ops_context(request, None, "Verification results")
        context.update(
            rows=[(objects[i.credential_id], i) for i in items],
            failed_ids=[i.credential_id for i in items if not i.ok],
            can_delete=self.has_delete_permission(request),
            action_checkbox_name=admin.helpers.ACTION_CHECKBOX_NAME,
        )
        return TemplateResponse(
            request, "admin/credentials/credential/verify_results.html", context
        )

    @admin.action(
        description="Disable those whose cached balance is used up", permissions=["change"]
    )
    def disable_exceeded(self, request: HttpRequest, queryset: QuerySet[Credential]) -> None:
        ids = services.credential_disable_exhausted(
            credential_ids=list(queryset.values_list("pk", flat=True))
        )
        for obj in Credential.objects.filter(pk__in=ids):
            self.log_change(request, obj, "Disabled: quota exceeded per cached balance (admin)")
        self.message_user(
            request, f"Disabled {len(ids)} credential(s) (QuotaExceeded).", messages.SUCCESS
        )

    def _intermediate(
        self,
        request: HttpRequest,
        queryset: QuerySet[Credential],
        form: Any,
        *,
        action: str,
        title: str,
        submit: str,
    ) -> TemplateResponse:
        context = self._ops_context(request, None, title)
        context.update(
            form=form,
            action=action,
            submit=submit,
            queryset=queryset,
            action_checkbox_name=admin.helpers.ACTION_CHECKBOX_NAME,
        )
        return TemplateResponse(request, "admin/credentials/credential/action_form.html", context)

    @admin.action(description="Edit groups (replace / add / remove) …", permissions=["change"])
    def edit_groups(
        self, request: HttpRequest, queryset: QuerySet[Credential]
    ) -> HttpResponse | None:
        form = GroupEditForm(request.POST if "apply" in request.POST else None)
        if "apply" in request.POST and form.is_valid():
            mode, names = form.cleaned_data["mode"], form.cleaned_data["groups"]
            objects = list(queryset)
            count = services.credential_edit_groups(
                credential_ids=[o.pk for o in objects], names=names, mode=mode
            )
            for obj in objects:
                self.log_change(request, obj, f"Groups {mode}: {', '.join(names) or '—'} (admin)")
            self.message_user(request, f"Edited the groups of {count} credential(s).")
            return None
        return self._intermediate(
            request, queryset, form, action="edit_groups", title="Edit groups", submit="Apply"
        )

    @admin.action(description="Assign a proxy from the pool …", permissions=["change"])
    def assign_proxy(
        self, request: HttpRequest, queryset: QuerySet[Credential]
    ) -> HttpResponse | None:
        form = AssignProxyForm(request.POST if "apply" in request.POST else None)
        if "apply" in request.POST and form.is_valid():
            url = form.chosen_url()
            objects = list(queryset)
            count = services.credential_set_proxy(credential_ids=[o.pk for o in objects], url=url)
            shown = services.proxy_mask(url) or "none (global proxy)"
            for obj in objects:
                self.log_change(request, obj, f"Proxy set to {shown} (admin)")
            self.message_user(request, f"Set the proxy of {count} credential(s) to {shown}.")
            return None
        return self._intermediate(
            request, queryset, form, action="assign_proxy", title="Assign a proxy", submit="Assign"
        )

    @admin.action(description="Assign pool proxies round-robin", permissions=["change"])
    def assign_proxy_round_robin(
        self, request: HttpRequest, queryset: QuerySet[Credential]
    ) -> None:
        objects = {o.pk: o for o in queryset}
        plan = services.credential_assign_round_robin(credential_ids=list(objects))
        if not plan:
            self.message_user(
                request, "No enabled, healthy proxy in the pool to assign.", messages.WARNING
            )
            return
        for pk, url in plan.items():
            self.log_change(
                request, objects[pk], f"Proxy set to {services.proxy_mask(url)} (admin)"
            )
        self.message_user(
            request,
            f"Spread {len(set(plan.values()))} proxies over {len(plan)} credential(s).",
            messages.SUCCESS,
        )


def _num(value: Any) -> str:
    """Format a credit amount compactly (2 decimals at most)."""
    if not isinstance(value, int | float):
        return "?"
    return f"{value:,.2f}".rstrip("0").rstrip(".")


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


def _batch_texts(request: HttpRequest) -> list[tuple[str, str]]:
    """Return the pasted JSON and each uploaded file as `(name, text)` pairs."""
    pasted = request.POST.get("text", "")
    texts = [("pasted JSON", pasted)] if pasted.strip() else []
    for upload in request.FILES.getlist("files"):
        texts.append((upload.name or "upload", upload.read().decode("utf-8-sig", "replace")))
    return texts


# --- streamed batch import (spec kiro-ops §6.3) ------------------------------------------------

_SSE_STATUS = {"imported": "imported", "verified": "verified", "duplicate": "duplicate"}


def _import_item_logged(
    run: services.BatchImportRun, item: batch_import.BatchItem, user_id: int
) -> batch_import.BatchOutcome:
    """Import one item and record the addition in the admin history, in one transaction."""
    with transaction.atomic():
        outcome = services.credential_batch_import_item(run=run, item=item)
        if outcome.credential_id:
            LogEntry.objects.log_actions(
                user_id=user_id,
                queryset=Credential.objects.filter(pk=outcome.credential_id),
                action_flag=ADDITION,
                change_message="Batch imported (admin)",
            )
    return outcome


def _roll_back_logged(credential_id: int, user_id: int) -> None:
    """Delete an imported credential that failed verification, recording the deletion."""
    with transaction.atomic():
        LogEntry.objects.log_actions(
            user_id=user_id,
            queryset=Credential.objects.filter(pk=credential_id),
            action_flag=DELETION,
            change_message="Batch import: verification failed, rolled back (admin)",
        )
        services.credential_delete(credential_ids=[credential_id])


def _usage(balance: Any) -> str | None:
    """Render a balance as "<current>/<limit>", rounded (spec §6.3)."""
    if not isinstance(balance, dict):
        return None
    return f"{round(balance.get('current_usage') or 0)}/{round(balance.get('usage_limit') or 0)}"


async def _import_and_verify(
    run: services.BatchImportRun, item: batch_import.BatchItem, *, verify: bool, user_id: int
) -> dict[str, Any]:
    """Import one item (and verify it, rolling back a failure); return its event."""
    outcome = await db(_import_item_logged, run, item, user_id)
    event: dict[str, Any] = {"index": item.index}
    if verify and outcome.outcome == "imported" and outcome.credential_id:
        pk = outcome.credential_id
        try:
            result = await operations.check_balance(credential_id=pk, force=True)
        except operations.OperationError as exc:
            await db(_roll_back_logged, pk, user_id)
            outcome = batch_import.apply_verification([outcome], {pk: (False, str(exc))})[0]
            event["rolledBack"] = True
        else:
            outcome = batch_import.apply_verification([outcome], {pk: (True, "")})[0]
            event["usage"] = _usage(result.balance)
            event["subscription"] = result.balance.get("subscription_title") or None
    event["status"] = _SSE_STATUS.get(outcome.outcome, "failed")
    if outcome.credential_id:
        event["credentialId"] = outcome.credential_id
    if outcome.label:
        event["email"] = outcome.label
    if event["status"] in ("failed", "duplicate") and outcome.detail:
        event["error"] = f"{outcome.outcome}: {outcome.detail}"
    return event


_finishing: set[asyncio.Task] = set()  # items whose client left mid-way; kept until done


async def batch_import_events(
    *,
    items: list[batch_import.BatchItem],
    include_errored: bool,
    verify: bool,
    user_id: int,
) -> AsyncIterator[str]:
    """Import items one at a time, yielding one `data: <json>` event each, then a summary.

    An async generator: under ASGI a sync iterator would be buffered whole. Items run in
    order (in-batch duplicates depend on it). When the client goes away (spec §6.3 "stop"),
    the generator is closed at a `yield` or cancelled while an item runs: the item in
    progress is shielded and still finishes (verified or rolled back, never half-done), no
    new item starts, the finished ones are kept, and no summary is sent.
    """
    summary = dict.fromkeys(
        ("total", "imported", "verified", "duplicate", "failed", "rolledBack"), 0
    )
    run = await db(services.credential_batch_import_start, include_errored=include_errored)
    done = 0
    try:
        for item in items:
            task = asyncio.ensure_future(
                _import_and_verify(run, item, verify=verify, user_id=user_id)
            )
            _finishing.add(task)
            task.add_done_callback(_finishing.discard)
            event = await asyncio.shield(task)
            summary["total"] += 1
            summary[event["status"]] += 1
            summary["rolledBack"] += 1 if event.get("rolledBack") else 0
            done += 1
            yield f"data: {json.dumps(event)}\n\n"
    except (GeneratorExit, asyncio.CancelledError):
        log.info("Batch import stopped by the client after %s of %s item(s)", done, len(items))
        raise
    yield f"data: {json.dumps({'status': 'summary', 'summary': summary})}\n\n"


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
    list_display = [
        "name", "masked", "group", "enabled", "is_system", "limits_summary", "usage_today",
        "usage_month", "last_used_at",
    ]  # fmt: skip
    list_filter = ["enabled", "is_system", "group"]
    search_fields = ["name", "description", "prefix"]
    list_select_related = ["group"]
    fieldsets = [
        (None, {"fields": [
            "name", "description", "group", "enabled", "masked", "is_system", "created_at",
        ]}),
        ("Limits (empty: unlimited; days and months in the server's time zone)", {"fields": [
            "rpm_limit", "daily_token_budget", "monthly_token_budget", "daily_credit_budget",
            "monthly_credit_budget",
        ]}),
        ("Usage", {"fields": ["usage_today", "usage_month", "in_flight", "last_used_at"]}),
    ]  # fmt: skip
    readonly_fields = [
        "masked", "is_system", "created_at", "last_used_at", "usage_today", "usage_month",
        "in_flight",
    ]  # fmt: skip
    actions = ["enable", "disable"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[ClientKey]:
        # One query for the page's day and month rows, not two per key.
        windows = ClientKeyWindow.objects.exclude(kind=LimitWindowKind.REQUEST)
        return (
            super()
            .get_queryset(request)
            .prefetch_related(
                models.Prefetch("limit_windows", queryset=windows, to_attr="usage_windows")
            )
        )

    @admin.display(description="key")
    def masked(self, obj: ClientKey) -> str:
        return f"{obj.prefix}…" if obj.prefix else "(assigned on save)"

    @admin.display(description="limits")
    def limits_summary(self, obj: ClientKey) -> str:
        parts = [f"{obj.rpm_limit:,} rpm"] if obj.rpm_limit is not None else []
        for value, unit, per in (
            (obj.daily_token_budget, "tokens", "day"),
            (obj.monthly_token_budget, "tokens", "month"),
            (obj.daily_credit_budget, "credits", "day"),
            (obj.monthly_credit_budget, "credits", "month"),
        ):
            if value is not None:
                parts.append(f"{limits.format_amount(value, unit)} {unit}/{per}")
        return ", ".join(parts) or "unlimited"

    def _usage(self, obj: ClientKey, kind: str) -> str:
        if obj.pk is None:
            return "—"
        prefetched = getattr(obj, "usage_windows", None)
        usage = limits.usage_of(obj.limit_windows.all() if prefetched is None else prefetched)
        window = usage.day if kind == LimitWindowKind.DAY else usage.month
        token_budget, credit_budget = (
            (obj.daily_token_budget, obj.daily_credit_budget)
            if kind == LimitWindowKind.DAY
            else (obj.monthly_token_budget, obj.monthly_credit_budget)
        )
        tokens = limits.format_amount(window.tokens, "tokens")
        if token_budget is not None:
            tokens += " / " + limits.format_amount(token_budget, "tokens")
        credits = limits.format_amount(window.credits, "credits")
        if credit_budget is not None:
            credits += " / " + limits.format_amount(credit_budget, "credits")
        return f"{window.requests:,} requests, {tokens} tokens, {credits} credits"

    @admin.display(description="today")
    def usage_today(self, obj: ClientKey) -> str:
        return self._usage(obj, LimitWindowKind.DAY)

    @admin.display(description="this month")
    def usage_month(self, obj: ClientKey) -> str:
        return self._usage(obj, LimitWindowKind.MONTH)

    @admin.display(description="requests in flight")
    def in_flight(self, obj: ClientKey) -> str:
        return "—" if obj.pk is None else str(limits.limit_in_flight(key_id=obj.pk))

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
        ClientKey.objects.filter(pk=created.pk).update(
            enabled=obj.enabled, **{name: getattr(obj, name) for name in limits.LIMIT_FIELDS}
        )
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
            "custom_models", "model_resolution", "fallback_model", "model_cache_ttl_secs",
            "extract_thinking", "tool_compatibility_mode", "stream_ping_interval_secs",
        ]}),
        ("count_tokens", {"fields": [
            "count_tokens_api_url", "count_tokens_api_key", "count_tokens_auth_type",
        ]}),
        ("Retention", {"fields": [
            "trace_enabled", "trace_retention_days", "usage_log_retention_days",
            "usage_record_retention_days",
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


@admin.register(ProxyEntry)
class ProxyEntryAdmin(admin.ModelAdmin):
    """The proxy pool (spec kiro-ops §7). Passwords in URLs are masked on every page."""

    form = ProxyEntryForm
    change_list_template = "admin/credentials/proxyentry/change_list.html"
    list_display = [
        "masked_url", "label", "enabled", "health", "latency", "last_checked_at",
        "consecutive_failures", "auto_disabled", "credential_count",
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

    @admin.display(description="latency", ordering="latency_ms")
    def latency(self, obj: ProxyEntry) -> str:
        return f"{obj.latency_ms} ms" if obj.latency_ms is not None else "—"

    @admin.display(description="credentials using it", ordering="n_credentials")
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


@admin.register(JobLock)
class JobLockAdmin(admin.ModelAdmin):
    """Background job leases (read-only): who ran what, when, and with what result."""

    list_display = ["name", "holder", "expires_at", "last_run_at", "last_result"]
    readonly_fields = ["name", "holder", "expires_at", "last_run_at", "last_result"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
