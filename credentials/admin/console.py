"""Console pages: balance, token, models, model test, overage, clear disabled (kiro-ops §8)."""

from __future__ import annotations

from datetime import UTC, datetime

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseRedirect,
)
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from credentials import (
    operations,
    services,
)
from credentials.admin.common import CredentialPageBase, badge, num
from credentials.forms import (
    ModelTestForm,
)
from credentials.models import (
    Credential,
)

# The overage capabilities that mean "cannot have overage" (spec kiro-ops #135).
NOT_OVERAGE_CAPABLE = ("NOT_OVERAGE_CAPABLE", "NOT_AVAILABLE")


def overage_candidates() -> tuple[dict[int, Credential], int, int]:
    """Sort the enabled credentials for "enable overage on all" (#134).

    Return the candidates by id, the count already enabled and the count not capable.
    """
    candidates: dict[int, Credential] = {}
    already = not_capable = 0
    for obj in Credential.objects.filter(enabled=True).order_by("pk"):
        if obj.overage_status == "ENABLED":
            already += 1
        elif obj.overage_capability in NOT_OVERAGE_CAPABLE:
            not_capable += 1
        else:  # capable, or not known yet: the operation checks the balance first
            candidates[obj.pk] = obj
    return candidates, already, not_capable


class ConsolePages(CredentialPageBase):
    """The operations console of one credential or the pool: mixed into CredentialAdmin."""

    @admin.display(description="balance")
    def balance_column(self, obj: Credential) -> str:
        balance = obj.balance if isinstance(obj.balance, dict) else None
        if not balance:
            return "—"
        exhausted = services.credential_balance_exhausted(balance)
        return format_html(
            '<span class="{}" title="remaining {}; checked {}">{} / {} ({}%)</span>',
            "kg-badge kg-bad" if exhausted else "kg-balance",
            num(balance.get("remaining")),
            obj.balance_checked_at.strftime("%Y-%m-%d %H:%M") if obj.balance_checked_at else "?",
            num(balance.get("current_usage")),
            num(balance.get("usage_limit")),
            num(balance.get("usage_percentage")),
        )

    @admin.display(description="overage")
    def overage_column(self, obj: Credential) -> str:
        # spec kiro-ops #135: enabled / disabled / not supported / unknown
        if obj.overage_capability in NOT_OVERAGE_CAPABLE:
            return badge("not supported")
        if obj.overage_status == "ENABLED":
            return badge("enabled", "ok")
        if obj.overage_status == "DISABLED":
            return badge("disabled")
        return badge("unknown")

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
            num(balance.get("current_usage")),
            num(balance.get("usage_limit")),
            num(balance.get("usage_percentage")),
            num(balance.get("remaining")),
            reset_text,
            obj.balance_checked_at.strftime("%Y-%m-%d %H:%M:%S") if obj.balance_checked_at else "?",
        )

    def console_urls(self) -> list:
        """The console pages' URLs (routed by CredentialAdmin.get_urls)."""
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
        ]

    def refresh_token_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        """Force a token refresh of one credential (POST)."""
        obj = self.ops_object(request, object_id)
        if request.method != "POST":
            return HttpResponse(status=405)
        self.refresh_one(request, obj)
        return self.back_to(obj)

    def balance_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        """Check one credential's balance (POST; cached 5 minutes)."""
        obj = self.ops_object(request, object_id)
        if request.method != "POST":
            return HttpResponse(status=405)
        self.balance_one(request, obj, force="force" in request.POST)
        return self.back_to(obj)

    def overage_view(self, request: HttpRequest, object_id: int, state: str) -> HttpResponse:
        """Switch overage on or off for one credential (POST)."""
        obj = self.ops_object(request, object_id)
        if request.method != "POST" or state not in ("on", "off"):
            return HttpResponse(status=405)
        self.overage_one(request, obj, state == "on")
        return self.back_to(obj)

    def models_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        """List the models this credential may call, live from ListAvailableModels."""
        obj = self.ops_object(request, object_id)
        context = self.ops_context(request, obj, f"Available models of {obj}")
        try:
            context["models"] = operations.run_sync(operations.list_models, credential_id=obj.pk)
        except operations.OperationError as exc:
            context["error"] = str(exc)
        else:
            self.log_change(request, obj, "Listed available models (admin)")
        return TemplateResponse(request, "admin/credentials/credential/models.html", context)

    def test_model_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        """Send one minimal real request to a chosen model as this credential (spec §8.3)."""
        obj = self.ops_object(request, object_id)
        context = self.ops_context(request, obj, f"Test a model as {obj}")
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
        context = self.ops_context(request, None, "Delete all disabled credentials?")
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
        candidates, already, not_capable = overage_candidates()
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
