"""URL routes: the admin, the health probe, and (later) the gateway endpoints."""

from __future__ import annotations

from django.contrib import admin
from django.urls import include, path, re_path

from gateway import openai_views
from gateway import views as gateway_views

admin.site.site_header = "kiro-gateway"
admin.site.site_title = "kiro-gateway"
admin.site.index_title = "Gateway administration"

urlpatterns = [
    path("healthz", gateway_views.healthz, name="healthz"),
    path("v1/messages", gateway_views.messages, name="messages"),
    path("v1/messages/count_tokens", gateway_views.count_tokens, name="count_tokens"),
    path("v1/models", gateway_views.models, name="models"),
    path("v1/chat/completions", openai_views.chat_completions, name="chat_completions"),
    path("v1/responses", openai_views.responses, name="responses"),
    path("cc/v1/messages", gateway_views.cc_messages, name="cc_messages"),
    path("cc/v1/messages/count_tokens", gateway_views.count_tokens, name="cc_count_tokens"),
    re_path(r"^(?:cc/)?v1/", gateway_views.not_found),
    path("", include("usage.urls")),
    path("admin/", admin.site.urls),
]
