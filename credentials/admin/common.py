"""What every admin page of the credentials app shares: no secret in a lookup, downloads,
the formatting of balances, and the plumbing of the credential console's pages."""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied
from django.db import models
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseRedirect,
)
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

from credentials.models import (
    Credential,
)

log = logging.getLogger(__name__)

SECRET_LOOKUPS = (
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


# Django 6 assumes https for scheme-less URLs; say so now so 5.2 and 6 behave alike.
URL_FIELDS = {models.URLField: {"assume_scheme": "https"}}


class NoSecretLookupsMixin:
    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest | None = None) -> bool:
        if any(lookup.startswith(name) for name in SECRET_LOOKUPS):
            return False
        return super().lookup_allowed(lookup, value, request)  # type: ignore[misc]


def download(text: str, filename: str) -> HttpResponse:
    response = HttpResponse(text, content_type="application/json; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["Cache-Control"] = "no-store"
    return response


def num(value: Any) -> str:
    """Format a credit amount compactly (2 decimals at most)."""
    if not isinstance(value, int | float):
        return "?"
    return f"{value:,.2f}".rstrip("0").rstrip(".")


# The list pages' template: the admin's change list plus static/admin/kiro-admin.css.
CHANGE_LIST_TEMPLATE = "admin/kiro/change_list.html"

BADGE_TONES = ("ok", "warn", "bad", "plain")


def badge(text: str, tone: str = "plain", title: str = "") -> SafeString:
    """Render a compact status badge (a span styled by kiro-admin.css), escaped."""
    if tone not in BADGE_TONES:
        tone = "plain"
    return format_html('<span class="kg-badge kg-{}" title="{}">{}</span>', tone, title, text)


def with_sub(main: Any, sub: str) -> SafeString:
    """Render a cell's value with a quieter second line under it (escaped)."""
    if not sub:
        return format_html("{}", main)
    return format_html('{}<span class="kg-sub">{}</span>', main, sub)


def compact(count: int) -> str:
    """Render a large count in three significant figures at most (12.3k, 4.56M)."""
    for size, suffix in ((1_000_000_000, "G"), (1_000_000, "M"), (1_000, "k")):
        if count >= size:
            value = count / size
            digits = 0 if value >= 100 else 1 if value >= 10 else 2
            return f"{value:.{digits}f}".rstrip("0").rstrip(".") + suffix
    return str(count)


def short_time(value: Any) -> str:
    """Render a datetime compactly for a list column, in the server's time zone: date and
    time each kept whole, on one line or two."""
    if value is None:
        return "—"
    local = timezone.localtime(value)
    return format_html(
        '<span class="kg-num">{}</span> <span class="kg-num">{}</span>',
        local.strftime("%Y-%m-%d"),
        local.strftime("%H:%M"),
    )


def usage_text(balance: Any) -> str | None:
    """Render a balance as "<current>/<limit>", rounded (spec §6.3)."""
    if not isinstance(balance, dict):
        return None
    return f"{round(balance.get('current_usage') or 0)}/{round(balance.get('usage_limit') or 0)}"


class CredentialPageBase:
    """What the credential console's page and action mixins share (mixed into CredentialAdmin).

    Public because the mixins live in modules of their own and call each other's through it.
    """

    def ops_object(self, request: HttpRequest, object_id: int) -> Credential:
        """Return the credential if the user may run operations on it, else raise 403."""
        obj = get_object_or_404(Credential, pk=object_id)
        if not self.has_change_permission(request, obj):  # type: ignore[attr-defined]
            raise PermissionDenied
        return obj

    def ops_context(self, request: HttpRequest, obj: Credential | None, title: str) -> dict:
        """The template context of a console page: the admin's, the credential, the title."""
        return {
            **self.admin_site.each_context(request),  # type: ignore[attr-defined]
            "opts": self.model._meta,  # type: ignore[attr-defined]
            "original": obj,
            "title": title,
        }

    def back_to(self, obj: Credential) -> HttpResponseRedirect:
        """Redirect to the credential's change page."""
        return HttpResponseRedirect(reverse("admin:credentials_credential_change", args=[obj.pk]))
