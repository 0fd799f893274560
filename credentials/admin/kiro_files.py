"""Console pages: import and export of kiro-rs files (kiro-ops §1, §2)."""

from __future__ import annotations

import json

from django.contrib import messages
from django.contrib.admin.models import ADDITION, CHANGE, LogEntry
from django.core.exceptions import PermissionDenied
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseRedirect,
)
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.decorators import method_decorator
from django.views.decorators.debug import sensitive_post_parameters

from credentials import (
    crypto,
    services,
)
from credentials.admin.common import download
from credentials.forms import (
    KiroImportForm,
)
from credentials.kiro_files import KiroFileError, dump_json
from credentials.models import (
    Credential,
    GatewaySettings,
)

IMPORT_SESSION_KEY = "kiro_import_pending"


class KiroFilePages:
    """export_view, import_view: mixed into CredentialAdmin, routed by its get_urls."""

    def kiro_file_urls(self) -> list:
        """The kiro-rs import and export URLs (routed by CredentialAdmin.get_urls)."""
        wrap = self.admin_site.admin_view
        return [
            path("import-kiro/", wrap(self.import_view), name="credentials_kiro_import"),
            path(
                "export-kiro/<str:which>.json",
                wrap(self.export_view),
                name="credentials_kiro_export",
            ),
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
        return download(text, f"{which}.json")

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
            request.session.pop(IMPORT_SESSION_KEY, None)
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
                request.session[IMPORT_SESSION_KEY] = crypto.encrypt(json.dumps(files))
                context.update(plan=plan, title="Confirm kiro-rs import")
                return TemplateResponse(
                    request, "admin/credentials/kiro_import_preview.html", context
                )
        context["form"] = form
        return TemplateResponse(request, "admin/credentials/kiro_import.html", context)

    def _import_confirm(self, request: HttpRequest) -> HttpResponse:
        pending = request.session.pop(IMPORT_SESSION_KEY, None)
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
        log_import(request, plan)
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


def log_import(request: HttpRequest, plan: services.ImportPlan) -> None:
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
