"""Deadline check, request id, the error envelope for anything a view raises, the caller's Principal."""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable

from django.core.exceptions import PermissionDenied, RequestDataTooBig, SuspiciousOperation
from django.http import Http404, HttpRequest, HttpResponse

import identity
from legacy_django.common.auth import resolve_principal
from legacy_django.common.errors import (
    ApiError,
    BadRequest,
    DeadlineExceeded,
    Forbidden,
    NotFound,
    PayloadTooLarge,
)
from legacy_django.common.responses import error_body, error_response, json_response

logger = logging.getLogger(__name__)
_REQUEST_ID_RE = re.compile(r"[A-Za-z0-9._:-]{1,128}")

GetResponse = Callable[[HttpRequest], HttpResponse]


def request_id_of(request: HttpRequest) -> str:
    return str(getattr(request, "request_id", ""))


def _request_id(incoming: str) -> str:
    return incoming if _REQUEST_ID_RE.fullmatch(incoming) else uuid.uuid4().hex


class DeadlineMiddleware:
    """First in the chain: a request whose ``X-Request-Deadline`` has passed gets 503
    ``deadline_exceeded`` (``Retry-After: 1``) and nothing else runs: no body read, no
    authentication, no view.

    The gateway sets the deadline to the moment it stops waiting for the answer; a request that is
    only picked up after it (it sat in gunicorn's queue while legacy was saturated) would be work
    whose answer nobody reads, and that makes the queue longer for everyone behind it.

    The deadline is honoured without verifying the identity assertion first (docs/identity.md): a
    past deadline can only make legacy skip the request that carries it, never do more or act for
    someone else, so whoever could add one could as well not send the request. Checking the
    signature first would read the body and run an HMAC for a request that is dropped anyway.
    A future or malformed deadline changes nothing here; a changed one fails the signature later
    (``PrincipalMiddleware``), as any tampered assertion does.
    """

    def __init__(self, get_response: GetResponse) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if identity.deadline_passed(request.META.get("HTTP_X_REQUEST_DEADLINE")):
            request_id = _request_id(request.META.get("HTTP_X_REQUEST_ID", ""))
            response = error_response(DeadlineExceeded(), request_id)
            response["X-Request-Id"] = request_id
            return response
        return self.get_response(request)


class RequestIdMiddleware:
    """Keep a sane incoming ``X-Request-Id`` (the gateway sets one), else make one; echo it back."""

    def __init__(self, get_response: GetResponse) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request.request_id = _request_id(request.headers.get("X-Request-Id", ""))  # type: ignore[attr-defined]
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
