"""Console pages: the login flows that add or re-login a credential (kiro-ops §8.4)."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseRedirect,
    JsonResponse,
)
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.decorators import method_decorator
from django.views.decorators.debug import sensitive_post_parameters

from credentials import (
    login,
)
from credentials.admin.common import CredentialPageBase
from credentials.forms import (
    IdcLoginForm,
    SocialCompleteForm,
    SocialLoginForm,
)
from credentials.models import (
    Credential,
)

LOGIN_TEMPLATE = "admin/credentials/credential/login.html"
LOGIN_SESSION_TEMPLATE = "admin/credentials/credential/login_session.html"


class LoginPages(CredentialPageBase):
    """login_view, relogin_view and the session pages: mixed into CredentialAdmin."""

    def login_urls(self) -> list:
        """The login pages' URLs (routed by CredentialAdmin.get_urls)."""
        wrap = self.admin_site.admin_view
        return [
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

    @method_decorator(sensitive_post_parameters())
    def login_view(self, request: HttpRequest) -> HttpResponse:
        """Add a credential by IdC device-code or Social login (operators only)."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        return self._login_start(request, None)

    @method_decorator(sensitive_post_parameters())
    def relogin_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        """Log an existing credential in again, keeping its id, priority, groups and email."""
        obj = self.ops_object(request, object_id)
        if obj.auth_method not in ("social", "idc"):
            self.message_user(
                request, "Only Social and IdC credentials can log in again.", messages.ERROR
            )
            return self.back_to(obj)
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
        context = self.ops_context(request, obj, title)
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
            self.ops_object(request, found.credential_id)
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
        context = self.ops_context(request, obj, "Log in")
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
