"""URL routes: the API endpoints, health and metrics, and the admin."""

from __future__ import annotations

from django.conf import settings
from django.contrib import admin
from django.urls import path, re_path, reverse_lazy
from django_otp.admin import OTPAdminSite

from gateway.api import edge, health, openai_views
from gateway.api import views as gateway_views

if settings.ADMIN_OTP_REQUIRED:
    # Staff are then verified by a TOTP device as well (django-otp's admin site).
    admin.site.__class__ = OTPAdminSite
# "View site" leads to the operator home (the admin index): the gateway has no public site.
# Set on the instance, so it holds when ADMIN_OTP_REQUIRED swaps the class above.
admin.site.site_url = reverse_lazy("admin:index")
admin.site.site_header = "kiro-gateway"
admin.site.site_title = "kiro-gateway"
admin.site.index_title = "Gateway administration"
# No navigation sidebar: the index page and the breadcrumbs navigate, and the list pages get
# the 360 px it takes, so that their columns fit a 1,280 px screen beside the filters.
admin.site.enable_nav_sidebar = False

# The API views see only their own methods: any other gets 405 after the key check (edge).
POST, GET = ("POST",), ("GET", "HEAD")

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("metrics", health.metrics, name="metrics"),
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
    path("admin/", admin.site.urls),
]
