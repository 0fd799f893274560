"""ASGI entry point: Django's app is built before channels routing is imported."""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kiro_site.settings")

# Build Django first: importing consumers (and their models) needs a configured app registry.
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402

from kiro_site.routing import websocket_application  # noqa: E402

application = ProtocolTypeRouter(
    {
        # Admin assets are served in-process so `make run` needs no web server in front;
        # every other path goes straight to Django.
        "http": ASGIStaticFilesHandler(django_asgi_app),
        "websocket": websocket_application,
    }
)
