"""Method dispatch with a 405 envelope, and the handlers Django calls for errors outside views."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.db import connection
from django.http import HttpRequest, HttpResponse

from legacy_django.common.errors import BadRequest, Forbidden, MethodNotAllowed, NotFound
from legacy_django.common.middleware import internal_error_response, request_id_of
from legacy_django.common.responses import error_response, json_response

View = Callable[..., HttpResponse]


def methods(**handlers: View) -> View:
    """One URL, one handler per HTTP method: ``methods(GET=detail, DELETE=delete)``; HEAD follows GET."""
    allowed = set(handlers) | ({"HEAD"} if "GET" in handlers else set())

    def dispatch(request: HttpRequest, **kwargs: Any) -> HttpResponse:
        method = request.method or ""
        handler = handlers.get("GET" if method == "HEAD" else method)
        if handler is None:
            raise MethodNotAllowed(method, allowed)
        return handler(request, **kwargs)

    return dispatch


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return error_response(NotFound(f"No route for {request.method} {request.path}."), request_id_of(request))


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return error_response(BadRequest("Bad request."), request_id_of(request))


def forbidden(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return error_response(Forbidden("Forbidden."), request_id_of(request))


def server_error(request: HttpRequest) -> HttpResponse:
    return internal_error_response(request)


def health(request: HttpRequest) -> HttpResponse:
    """Ready when the database answers; a database error becomes the 500 envelope."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return json_response({"status": "ok"})
