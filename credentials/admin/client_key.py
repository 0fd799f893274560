"""Client keys: list, create (the plaintext shown once), rotate, limits, lifetime totals."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import models
from django.db.models import QuerySet
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
)
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from credentials import (
    limits,
    services,
)
from credentials.admin.common import (
    CHANGE_LIST_TEMPLATE,
    NoSecretLookupsMixin,
    badge,
    compact,
    short_time,
    with_sub,
)
from credentials.models import (
    ClientKey,
    ClientKeyWindow,
    LimitWindowKind,
)


@admin.register(ClientKey)
class ClientKeyAdmin(NoSecretLookupsMixin, admin.ModelAdmin):
    change_list_template = CHANGE_LIST_TEMPLATE
    list_display = [
        "key_name", "group_name", "status", "limits_summary", "usage_today", "usage_month",
        "lifetime", "last_used",
    ]  # fmt: skip
    list_display_links = ["key_name"]
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
        ("Lifetime (since the totals started or were last reset)", {"fields": [
            "lifetime_requests", "lifetime_tokens", "lifetime_credits", "lifetime_since",
        ]}),
    ]  # fmt: skip
    readonly_fields = [
        "masked", "is_system", "created_at", "last_used_at", "usage_today", "usage_month",
        "in_flight", "lifetime_requests", "lifetime_tokens", "lifetime_credits",
        "lifetime_since",
    ]  # fmt: skip
    actions = ["enable", "disable", "reset_totals"]

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

    @admin.display(description="name", ordering="name")
    def key_name(self, obj: ClientKey) -> str:
        return with_sub(obj.name, self.masked(obj))

    @admin.display(description="group", ordering="group__name")
    def group_name(self, obj: ClientKey) -> str:
        return obj.group.name if obj.group else "—"

    @admin.display(description="status", ordering="enabled")
    def status(self, obj: ClientKey) -> str:
        state = badge("enabled", "ok") if obj.enabled else badge("disabled", "bad")
        if not obj.is_system:
            return state
        return format_html("{} {}", state, badge("system", title="config.json apiKey"))

    @admin.display(description="last used", ordering="last_used_at")
    def last_used(self, obj: ClientKey) -> str:
        return short_time(obj.last_used_at)

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

    def _key_usage(self, obj: ClientKey) -> limits.KeyUsage:
        """The key's day, month and lifetime figures, read once per object shown."""
        if getattr(obj, "key_usage", None) is None:
            prefetched = getattr(obj, "usage_windows", None)
            windows = obj.limit_windows.all() if prefetched is None else prefetched
            obj.key_usage = limits.usage_of(windows)  # type: ignore[attr-defined]
        return obj.key_usage  # type: ignore[attr-defined]

    def _usage(self, obj: ClientKey, kind: str) -> str:
        if obj.pk is None:
            return "—"
        usage = self._key_usage(obj)
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

    @admin.display(description="lifetime")
    def lifetime(self, obj: ClientKey) -> str:
        total = self._key_usage(obj).total
        tokens = f"{compact(total.input_tokens)} in / {compact(total.output_tokens)} out tokens"
        exact = (
            f"{total.requests:,} requests, {total.input_tokens:,} input and "
            f"{total.output_tokens:,} output tokens, "
            f"{limits.format_amount(total.credits, 'credits')} credits"
        )
        return format_html(
            '<span title="{}">{} requests<span class="kg-sub">{} · {} credits</span></span>',
            exact,
            f"{total.requests:,}",
            tokens,
            limits.format_amount(round(total.credits, 2), "credits"),
        )

    def _totals(self, obj: ClientKey) -> limits.KeyTotals:
        return limits.KeyTotals() if obj.pk is None else self._key_usage(obj).total

    @admin.display(description="requests")
    def lifetime_requests(self, obj: ClientKey) -> str:
        return f"{self._totals(obj).requests:,}"

    @admin.display(description="tokens")
    def lifetime_tokens(self, obj: ClientKey) -> str:
        total = self._totals(obj)
        return f"{total.input_tokens:,} input, {total.output_tokens:,} output"

    @admin.display(description="credits")
    def lifetime_credits(self, obj: ClientKey) -> str:
        return limits.format_amount(self._totals(obj).credits, "credits")

    @admin.display(description="counting since")
    def lifetime_since(self, obj: ClientKey) -> str:
        since = self._totals(obj).since
        return short_time(since) if since else "not used yet"

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
            path(
                "<int:pk>/reset-totals/",
                wrap(self.reset_totals_view),
                name="credentials_clientkey_reset_totals",
            ),
            *super().get_urls(),
        ]

    def reset_totals_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        """Zero one key's lifetime totals (POST, from its change page)."""
        key = get_object_or_404(ClientKey, pk=pk)
        if not self.has_change_permission(request, key):
            raise PermissionDenied
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        self._reset_totals(request, [key])
        return HttpResponseRedirect(reverse("admin:credentials_clientkey_change", args=[key.pk]))

    def _reset_totals(self, request: HttpRequest, keys: list[ClientKey]) -> None:
        before = services.client_key_reset_totals(key_ids=[key.pk for key in keys])
        for key in keys:
            was = before[key.pk]
            self.log_change(
                request,
                key,
                f"Reset lifetime statistics (were {was.requests:,} requests, "
                f"{was.input_tokens:,} input and {was.output_tokens:,} output tokens, "
                f"{limits.format_amount(was.credits, 'credits')} credits)",
            )
        self.message_user(
            request, f"Reset the lifetime statistics of {len(keys)} key(s).", messages.SUCCESS
        )

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
        self._set_enabled(request, queryset, True)

    @admin.action(description="Reset lifetime statistics", permissions=["change"])
    def reset_totals(self, request: HttpRequest, queryset: QuerySet[ClientKey]) -> None:
        self._reset_totals(request, list(queryset))

    @admin.action(description="Disable selected keys", permissions=["change"])
    def disable(self, request: HttpRequest, queryset: QuerySet[ClientKey]) -> None:
        self._set_enabled(request, queryset, False)

    def _set_enabled(
        self, request: HttpRequest, queryset: QuerySet[ClientKey], enabled: bool
    ) -> None:
        verb = "Enabled" if enabled else "Disabled"
        keys = list(queryset)
        for key in keys:
            self.log_change(request, key, f"{verb} (admin action)")
        count = services.client_key_set_enabled(key_ids=[key.pk for key in keys], enabled=enabled)
        self.message_user(request, f"{verb} {count} key(s).", messages.SUCCESS)
