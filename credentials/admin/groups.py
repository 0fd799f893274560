"""Credential groups."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import Count, QuerySet
from django.http import (
    HttpRequest,
)

from credentials.models import (
    CredentialGroup,
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
