"""The credential list's bulk actions; each one calls a service or an operation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.forms import Form
from django.http import (
    HttpRequest,
    HttpResponse,
)
from django.template.response import TemplateResponse

from credentials import (
    operations,
    services,
)
from credentials.admin.common import CredentialPageBase, num
from credentials.forms import (
    AssignProxyForm,
    GroupEditForm,
)
from credentials.models import (
    Credential,
)


class CredentialActions(CredentialPageBase):
    """Admin actions on selected credentials: mixed into CredentialAdmin."""

    # One credential at a time; each reports through message_user and logs to the history.

    def refresh_one(self, request: HttpRequest, obj: Credential) -> bool:
        try:
            expiry = operations.run_sync(operations.refresh_token, credential_id=obj.pk)
        except operations.OperationError as exc:
            self.message_user(request, f"{obj}: {exc}", messages.ERROR)
            return False
        self.log_change(request, obj, "Refreshed the token (admin)")
        self.message_user(request, f"{obj}: token refreshed, expires {expiry}.", messages.SUCCESS)
        return True

    def balance_one(self, request: HttpRequest, obj: Credential, *, force: bool = False) -> bool:
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
            f"{obj}: {b['subscription_title'] or 'unknown plan'}, {num(b['current_usage'])} / "
            f"{num(b['usage_limit'])} used ({num(b['usage_percentage'])}%), "
            f"{num(b['remaining'])} remaining" + (" (cached)" if result.cached else ""),
            messages.SUCCESS,
        )
        return True

    def overage_one(self, request: HttpRequest, obj: Credential, enabled: bool) -> bool:
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
            self.refresh_one(request, obj)

    @admin.action(description="Check balance (cached 5 minutes)", permissions=["change"])
    def check_balance(self, request: HttpRequest, queryset: QuerySet[Credential]) -> None:
        for obj in queryset:
            self.balance_one(request, obj)

    @admin.action(description="Enable overage (where supported)", permissions=["change"])
    def overage_on(self, request: HttpRequest, queryset: QuerySet[Credential]) -> None:
        for obj in queryset:
            if obj.overage_status == "ENABLED":
                continue  # spec #134: "enable for all" skips those already enabled
            self.overage_one(request, obj, True)

    @admin.action(description="Disable overage", permissions=["change"])
    def overage_off(self, request: HttpRequest, queryset: QuerySet[Credential]) -> None:
        for obj in queryset:
            self.overage_one(request, obj, False)

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
        context = self.ops_context(request, None, "Verification results")
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

    def _form_action(
        self,
        request: HttpRequest,
        queryset: QuerySet[Credential],
        form_class: type[Form],
        apply: Callable[[Any, list[Credential]], tuple[str, str]],
        *,
        action: str,
        title: str,
        submit: str,
    ) -> HttpResponse | None:
        """An action that asks for a form first. On a valid "apply" POST, `apply(form, objects)`
        calls the service and returns (each object's history note, the message to show);
        otherwise the intermediate page shows the form."""
        form = form_class(request.POST if "apply" in request.POST else None)
        if "apply" in request.POST and form.is_valid():
            objects = list(queryset)
            note, summary = apply(form, objects)
            for obj in objects:
                self.log_change(request, obj, note)
            self.message_user(request, summary)
            return None
        context = self.ops_context(request, None, title)
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
        def apply(form: GroupEditForm, objects: list[Credential]) -> tuple[str, str]:
            mode, names = form.cleaned_data["mode"], form.cleaned_data["groups"]
            count = services.credential_edit_groups(
                credential_ids=[o.pk for o in objects], names=names, mode=mode
            )
            return (
                f"Groups {mode}: {', '.join(names) or '—'} (admin)",
                f"Edited the groups of {count} credential(s).",
            )

        return self._form_action(
            request,
            queryset,
            GroupEditForm,
            apply,
            action="edit_groups",
            title="Edit groups",
            submit="Apply",
        )

    @admin.action(description="Assign a proxy from the pool …", permissions=["change"])
    def assign_proxy(
        self, request: HttpRequest, queryset: QuerySet[Credential]
    ) -> HttpResponse | None:
        def apply(form: AssignProxyForm, objects: list[Credential]) -> tuple[str, str]:
            url = form.chosen_url()
            count = services.credential_set_proxy(credential_ids=[o.pk for o in objects], url=url)
            shown = services.proxy_mask(url) or "none (global proxy)"
            return (
                f"Proxy set to {shown} (admin)",
                f"Set the proxy of {count} credential(s) to {shown}.",
            )

        return self._form_action(
            request,
            queryset,
            AssignProxyForm,
            apply,
            action="assign_proxy",
            title="Assign a proxy",
            submit="Assign",
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
