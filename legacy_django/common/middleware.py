"""Request id, the error envelope for anything a view raises, and the caller's Principal."""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable

from django.core.exceptions import PermissionDenied, RequestDataTooBig, SuspiciousOperation
from django.http import Http404, HttpRequest, HttpResponse

from legacy_django.common.auth import resolve_principal
from legacy_django.common.errors import ApiError, BadRequest, Forbidden, NotFound, PayloadTooLarge
from legacy_django.common.responses import error_body, error_response, json_response

logger = logging.getLogger(__name__)
_REQUEST_ID_RE = re.compile(r"[A-Za-z0-9._:-]{1,128}")

GetResponse = Callable[[HttpRequest], HttpResponse]


def request_id_of(request: HttpRequest) -> str:
    return str(getattr(request, "request_id", ""))


class RequestIdMiddleware:
    """Keep a sane incoming ``X-Request-Id`` (the gateway sets one), else make one; echo it back."""

    def __init__(self, get_response: GetResponse) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        incoming = request.headers.get("X-Request-Id", "")
        request.request_id = incoming if _REQUEST_ID_RE.fullmatch(incoming) else uuid.uuid4().hex  # type: ignore[attr-defined]
        response = self.get_response(request)
        response["X-Request-Id"] = request.request_id  # type: ignore[attr-defined]
        return response


def _as_api_error(exc: Exception) -> ApiError | None:
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, RequestDataTooBig):
        return PayloadTooLarge("The request body is too large.")
    if isinstance(exc, Http404):
        return NotFound("Not found.")
    if isinstance(exc, PermissionDenied):
        return Forbidden("Forbidden.")
    if isinstance(exc, SuspiciousOperation):
        return BadRequest("Bad request.")
    return None


class ErrorEnvelopeMiddleware:
    """Turn every exception from a view into the JSON envelope; never a stack trace."""

    def __init__(self, get_response: GetResponse) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exc: Exception) -> HttpResponse:
        error = _as_api_error(exc)
        if error is not None:
            return error_response(error, request_id_of(request))
        logger.exception("unhandled error on %s %s", request.method, request.path)
        return internal_error_response(request)


def internal_error_response(request: HttpRequest) -> HttpResponse:
    body = error_body("internal_error", "Internal server error.", request_id_of(request))
    return json_response(body, status=500)


class PrincipalMiddleware:
    def __init__(self, get_response: GetResponse) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        try:
            request.principal = resolve_principal(request)  # type: ignore[attr-defined]
        except ApiError as error:  # a signed body too large to verify; raised here, not in a view
            return error_response(error, request_id_of(request))
        return self.get_response(request)
