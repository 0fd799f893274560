"""ASGI entry point: Django's app is built before channels routing is imported."""

from __future__ import annotations

import os
from typing import Any

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kiro_site.settings")

# Build Django first: importing consumers (and their models) needs a configured app registry.
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402
from django.core.handlers.asgi import ASGIHandler  # noqa: E402
from django.core.handlers.exception import convert_exception_to_response  # noqa: E402

from kiro_site.routing import websocket_application  # noqa: E402

API_PREFIXES = ("/v1/", "/cc/v1/")


class GatewayASGIHandler(ASGIHandler):
    """Django for the client API without the middleware stack.

    PERF-NOTES: the default stack costs milliseconds of CPU per request, and Django runs each
    MiddlewareMixin hook through a thread hop under ASGI. The API views need none of it:
    they authenticate client keys themselves, are CSRF-exempt, and answer their own errors.
    """

    def load_middleware(self, is_async: bool = False) -> None:
        self._view_middleware = []
        self._template_response_middleware = []
        self._exception_middleware = []
        self._middleware_chain = convert_exception_to_response(self._get_response_async)


gateway_asgi_app = GatewayASGIHandler()
site_asgi_app = ASGIStaticFilesHandler(django_asgi_app)


async def http_application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Send API paths to the lean handler; the admin and the rest to the full stack."""
    if scope.get("path", "").startswith(API_PREFIXES):
        await gateway_asgi_app(scope, receive, send)
    else:
        # Admin assets are served in-process so `make run` needs no web server in front.
        await site_asgi_app(scope, receive, send)


application = ProtocolTypeRouter({"http": http_application, "websocket": websocket_application})
