"""URL routes: the admin, the health probe, and (later) the gateway endpoints."""

from __future__ import annotations

from django.contrib import admin
from django.urls import path

from gateway import views as gateway_views

admin.site.site_header = "kiro-gateway"
admin.site.site_title = "kiro-gateway"
admin.site.index_title = "Gateway administration"

urlpatterns = [
    path("healthz", gateway_views.healthz, name="healthz"),
    path("admin/", admin.site.urls),
]
