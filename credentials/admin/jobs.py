"""Background job leases (read-only)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import (
    HttpRequest,
)

from credentials.models import (
    JobLock,
)


@admin.register(JobLock)
class JobLockAdmin(admin.ModelAdmin):
    """Background job leases (read-only): who ran what, when, and with what result."""

    list_display = ["name", "holder", "expires_at", "last_run_at", "last_result"]
    readonly_fields = ["name", "holder", "expires_at", "last_run_at", "last_result"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
