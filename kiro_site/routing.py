"""Websocket routes (the live usage feed arrives with the operator console)."""

from __future__ import annotations

from channels.auth import AuthMiddlewareStack
from channels.routing import URLRouter
from channels.security.websocket import AllowedHostsOriginValidator
from django.urls import path

from usage.consumers import UsageLiveConsumer

websocket_urlpatterns: list = [
    path("ws/usage/live/", UsageLiveConsumer.as_asgi()),
]

websocket_application = AllowedHostsOriginValidator(
    AuthMiddlewareStack(URLRouter(websocket_urlpatterns))
)
