"""ASGI entry point: Django's app is built before channels routing is imported."""

from __future__ import annotations

import os
from typing import Any

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kiro_site.settings")

# Build Django first: importing consumers (and their models) needs a configured app registry.
django_asgi_app = get_asgi_application()

from credentials import tracing  # noqa: E402

tracing.configure()  # OpenTelemetry, when OTEL_EXPORTER_OTLP_ENDPOINT is set

import asyncio  # noqa: E402
import contextlib  # noqa: E402
import time  # noqa: E402

from channels.routing import ProtocolTypeRouter  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402
from django.core.exceptions import RequestAborted  # noqa: E402
from django.core.handlers.asgi import ASGIHandler, get_script_prefix  # noqa: E402
from django.http import HttpRequest, HttpResponse  # noqa: E402
from django.urls import set_script_prefix  # noqa: E402

from gateway.api import edge, health  # noqa: E402
from kiro_site.routing import websocket_application  # noqa: E402
from usage.services import usage_drafts_collect  # noqa: E402

API_PREFIXES = ("/v1/", "/cc/v1/")


class GatewayASGIHandler(ASGIHandler):
    """Django for the client API without the middleware stack.

    PERF-NOTES: the default stack costs milliseconds of CPU per request, and Django runs each
    MiddlewareMixin hook through a thread hop under ASGI. The API views need none of it:
    they authenticate client keys themselves, are CSRF-exempt, and answer their own errors.
    What still escapes them is answered by `gateway.api.edge`, in the endpoint's JSON shape and
    with its one usage record, instead of by Django's HTML error pages.
    """

    def load_middleware(self, is_async: bool = False) -> None:
        self._view_middleware = []
        self._template_response_middleware = []
        self._exception_middleware = []
        self._middleware_chain = self._answer_everything

    async def _answer_everything(self, request: HttpRequest) -> HttpResponse:
        """Run the view; answer whatever escapes it as the endpoint does, with one record."""
        started = time.monotonic()
        drafts = usage_drafts_collect()  # the drafts the view creates, in this task's context
        try:
            return await self._get_response_async(request)
        except Exception as exc:
            return await edge.answer_escaped(
                request, request.path, exc, drafts=drafts, started=started
            )

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        # No ThreadSensitiveContext: it starts (and stops) a thread for every request that
        # runs anything thread-sensitive, and the API views run none; their database work
        # goes to worker threads through credentials.asyncdb.
        await self.handle(scope, receive, send)

    async def handle(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Django's ASGIHandler.handle without the two thread hops around the view.

        Django sends `request_started` through `sync_to_async` before the view and closes
        the response through it afterwards, each a hand-off to the sync thread (PERF-NOTES:
        ~0.2-0.5 ms each, the first one before the first byte). Their receivers reset the
        debug query log and close that thread's stale connections; the gateway opens none
        there. Here `request_started` is not sent and the response is closed on the loop
        (`request_finished` then finds no connection of this thread to close)."""
        started = time.monotonic()
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        set_script_prefix(get_script_prefix(scope))
        try:
            request = self.request_class(scope, body_file)
        except Exception as exc:  # e.g. a query string that is not UTF-8 (Django: HTML 400)
            body_file.close()
            error_response = await edge.answer_escaped(
                None, scope.get("path", ""), exc, started=started
            )
            await self.send_response(error_response, send)
            error_response.close()
            return

        async def process_request() -> Any:
            response = await self.run_get_response(request)
            with contextlib.suppress(asyncio.CancelledError):  # the client went away
                await self.send_response(response, send)
            return response

        # As Django does: serve, and cancel the view if the client disconnects first.
        listener = asyncio.create_task(self.listen_for_disconnect(receive))
        serving = asyncio.create_task(process_request())
        await asyncio.wait((listener, serving), return_when=asyncio.FIRST_COMPLETED)
        for task in (listener, serving):
            if task.done():
                try:
                    task.result()
                except RequestAborted:
                    pass  # the client disconnected
                except AssertionError:
                    body_file.close()
                    raise
            else:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        try:
            response = serving.result()
        except asyncio.CancelledError:
            pass
        else:
            response.close()
        body_file.close()


gateway_asgi_app = GatewayASGIHandler()
site_asgi_app = ASGIStaticFilesHandler(django_asgi_app)


async def http_application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Send API paths to the lean handler; the admin and the rest to the full stack."""
    health.watch_event_loop()  # the health port's heartbeat, if lifespan did not start it
    if scope.get("path", "").startswith(API_PREFIXES):
        await gateway_asgi_app(scope, receive, send)
    else:
        # Admin assets are served in-process so `make run` needs no web server in front.
        await site_asgi_app(scope, receive, send)


router = ProtocolTypeRouter({"http": http_application, "websocket": websocket_application})


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The ASGI entry point: HTTP and websockets through the router; the lifespan protocol
    (uvicorn, `manage.py serve`) starts the worker's heartbeat for the health port."""
    if scope["type"] != "lifespan":
        await router(scope, receive, send)
        return
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            health.watch_event_loop()
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
