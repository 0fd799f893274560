"""The answers of the client API that no endpoint view gives: unknown paths, wrong methods,
and whatever escapes a view (the last resort of kiro_site.asgi.GatewayASGIHandler).

Each is JSON in the shape of the endpoint asked for (OpenAI's on the OpenAI paths, Anthropic's
elsewhere), never Django's HTML page, and leaves exactly one usage record. The key is checked
first here too, so every endpoint answers in one order: 401, then 404/405, then 413, then 400.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from functools import wraps

from django.conf import settings
from django.core.exceptions import (
    BadRequest,
    DisallowedHost,
    PermissionDenied,
    RequestDataTooBig,
    SuspiciousOperation,
)
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse, UnreadablePostError
from django.views.decorators.csrf import csrf_exempt

from gateway.api import accounting, views
from gateway.api.responses import error_response
from gateway.protocol import errors, openai
from gateway.protocol.errors import ClientError, ErrorType
from usage.services import UsageDraft, usage_draft_track

log = logging.getLogger(__name__)

View = Callable[[HttpRequest], Awaitable[HttpResponse]]

OPENAI_PATHS = frozenset(("/v1/chat/completions", "/v1/responses"))
ENDPOINTS = frozenset(
    (
        "/v1/messages",
        "/cc/v1/messages",
        "/v1/messages/count_tokens",
        "/cc/v1/messages/count_tokens",
        "/v1/models",
        *OPENAI_PATHS,
    )
)


def endpoint_of(path: str) -> str:
    """Name the endpoint of a path for its usage record: a known route, or `/v1/*`.

    Unknown paths share one name, so a client cannot grow the metrics' endpoint labels."""
    if path in ENDPOINTS:
        return path
    return "/cc/v1/*" if path.startswith("/cc/") else "/v1/*"


def shaped(error: ClientError, path: str) -> JsonResponse:
    """Answer an error as the endpoint at `path` does: OpenAI's shape or Anthropic's."""
    if path not in OPENAI_PATHS:
        return error_response(error)
    body = openai.anthropic_error_to_openai(error.status, error.body())
    response = JsonResponse(body, status=error.status)
    if error.retry_after is not None:
        response["Retry-After"] = str(error.retry_after)
    return response


async def _refuse(
    request: HttpRequest, error: ClientError, headers: dict[str, str]
) -> HttpResponse:
    """Check the key, then answer `error` (401 first without a valid key), with one record."""
    key, _, draft, started = await views.authenticate(request, endpoint_of(request.path))
    if key is None:
        error, headers = views.INVALID_KEY, {}
    await accounting.write_local(
        draft,
        status=error.status,
        started=started,
        error_type=error.kind,
        message=error.message,
    )
    response = shaped(error, request.path)
    for name, value in headers.items():
        response[name] = value
    return response


def _declared_too_large(request: HttpRequest) -> bool:
    """Tell whether the Content-Length is over KIRO_MAX_BODY_BYTES (nothing is read)."""
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    try:
        return limit is not None and int(request.META.get("CONTENT_LENGTH") or 0) > limit
    except ValueError:
        return False


def only(methods: Sequence[str], view: View) -> View:
    """Let only `methods` reach the view; any other gets 405 after the key check.

    A body declared over the size limit gets its 413 here too, after the key check, on
    every endpoint alike; the views check again what they read (a chunked body declares
    no length)."""
    allowed = ", ".join(methods)
    error = errors.method_not_allowed(f"Method not allowed: use {allowed}.")

    @csrf_exempt
    @wraps(view)
    async def guarded(request: HttpRequest) -> HttpResponse:
        if request.method not in methods:
            return await _refuse(request, error, {"Allow": allowed})
        if _declared_too_large(request):
            return await _refuse(request, views.TOO_LARGE, {})
        return await view(request)

    return guarded


@csrf_exempt
async def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """Answer an unknown API path with 404 (401 first without a valid key)."""
    error = errors.not_found(f"Not found: {request.method} {request.path}")
    return await _refuse(request, error, {})


# --- the last resort ---------------------------------------------------------------------

INVALID_HOST = errors.invalid_request("Invalid Host header.", ErrorType.INVALID_HOST)
MALFORMED = errors.invalid_request("The request is malformed.")
UNREADABLE = errors.invalid_request("The request body could not be read.")
FORBIDDEN = errors.permission("Forbidden.")


def _classify(exc: Exception, request: HttpRequest | None) -> ClientError:
    """Map what Django or a view raised to the client's error (and the record's type)."""
    if isinstance(exc, RequestDataTooBig):
        return views.TOO_LARGE
    if isinstance(exc, DisallowedHost):
        return INVALID_HOST
    if isinstance(exc, SuspiciousOperation | BadRequest | UnicodeDecodeError):
        return MALFORMED
    if isinstance(exc, UnreadablePostError):
        return UNREADABLE
    if isinstance(exc, Http404):
        where = f"{request.method} {request.path}" if request is not None else "this path"
        return errors.not_found(f"Not found: {where}")
    if isinstance(exc, PermissionDenied):
        return FORBIDDEN
    return views.INTERNAL_ERROR


async def answer_escaped(
    request: HttpRequest | None,
    path: str,
    exc: Exception,
    *,
    drafts: Sequence[UsageDraft] = (),
    started: float,
) -> HttpResponse:
    """Answer an exception no view caught, and make sure the request has its one record.

    `drafts` are those the request created (usage.services.usage_drafts_collect): none
    written means no record yet, so the first one (which knows the key) is written, or a
    keyless one if the request did not get as far as the key."""
    error = _classify(exc, request)
    if error.status >= 500:
        log.error("unexpected error on %s", path, exc_info=exc)
    else:
        log.warning("refused %s: %s", path, exc.__class__.__name__)
    if not any(draft.written for draft in drafts):
        draft = drafts[0] if drafts else usage_draft_track(UsageDraft(endpoint=endpoint_of(path)))
        await accounting.write_local(
            draft,
            status=error.status,
            started=started,
            error_type=error.kind,
            message=f"{exc.__class__.__name__}: {exc}"[:500]
            if error.status >= 500
            else error.message,
        )
    return shaped(error, path)
