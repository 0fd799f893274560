"""Middleware of the admin stack (the client API runs without any: see asgi.py)."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest


def reject_nul_in_query(
    get_response: Callable[[HttpRequest], HttpResponse],
) -> Callable[[HttpRequest], HttpResponse]:
    """Answer 400 to a query string holding a NUL byte.

    Postgres refuses NUL in text, so an admin filter or search given one (`?q=%00`) would end
    in a database error, a 500; forms already refuse NUL in their fields.
    """

    def middleware(request: HttpRequest) -> HttpResponse:
        for key, values in request.GET.lists():
            if "\x00" in key or any("\x00" in value for value in values):
                return HttpResponseBadRequest("NUL byte in the query string")
        return get_response(request)

    return middleware
