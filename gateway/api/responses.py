"""Response helpers shared by the gateway views."""

from __future__ import annotations

from django.http import JsonResponse

from gateway.protocol.classify import ClientError

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def error_response(error: ClientError) -> JsonResponse:
    """Answer with Anthropic's error JSON (and Retry-After when known)."""
    response = JsonResponse(error.body(), status=error.status)
    if error.retry_after is not None:
        response["Retry-After"] = str(error.retry_after)
    return response
