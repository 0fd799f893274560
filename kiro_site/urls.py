"""URL routes: the admin, the health probe, and (later) the gateway endpoints."""

from __future__ import annotations

from django.contrib import admin
from django.urls import include, path, re_path

from gateway import edge, openai_views
from gateway import views as gateway_views

admin.site.site_header = "kiro-gateway"
admin.site.site_title = "kiro-gateway"
admin.site.index_title = "Gateway administration"

# The API views see only their own methods: any other gets 405 after the key check (edge).
POST, GET = ("POST",), ("GET", "HEAD")

urlpatterns = [
    path("healthz", gateway_views.healthz, name="healthz"),
    path("v1/messages", edge.only(POST, gateway_views.messages), name="messages"),
    path(
        "v1/messages/count_tokens",
        edge.only(POST, gateway_views.count_tokens),
        name="count_tokens",
    ),
    path("v1/models", edge.only(GET, gateway_views.models), name="models"),
    path(
        "v1/chat/completions",
        edge.only(POST, openai_views.chat_completions),
        name="chat_completions",
    ),
    path("v1/responses", edge.only(POST, openai_views.responses), name="responses"),
    path("cc/v1/messages", edge.only(POST, gateway_views.cc_messages), name="cc_messages"),
    path(
        "cc/v1/messages/count_tokens",
        edge.only(POST, gateway_views.count_tokens),
        name="cc_count_tokens",
    ),
    re_path(r"^(?:cc/)?v1/", edge.not_found),
    path("", include("usage.urls")),
    path("admin/", admin.site.urls),
]
