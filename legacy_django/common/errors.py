"""API errors: every client-visible error is one of these, rendered as the JSON envelope.

Hierarchy::

    ApiError(status, code, message, fields=None, headers=None, extra=None)
        BadRequest             400 bad_request       (malformed JSON, unreadable body)
        ValidationFailed       400 validation_error  (with ``fields``)
        Unauthenticated        401 unauthenticated   (WWW-Authenticate: Bearer)
        InvalidCredentials     401 invalid_credentials
        Forbidden              403 forbidden
        NotFound               404 not_found
        MethodNotAllowed       405 method_not_allowed (Allow: ...)
        Conflict               409 conflict          (subclasses may name another code)
        PayloadTooLarge        413 payload_too_large
        UnsupportedMediaType   415 unsupported_media_type
        DeadlineExceeded       503 deadline_exceeded (Retry-After: 1)
        Unavailable            503 unavailable       (Retry-After: 1; nothing was written)

``extra`` adds endpoint-specific keys to the envelope's ``error`` object (``option_ids`` of a
``sold_out``, say), after the standard ones.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


class ApiError(Exception):
    status = 500
    code = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        fields: dict[str, list[str]] | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields
        self.headers = headers or {}
        self.extra = extra or {}


class BadRequest(ApiError):
    status = 400
    code = "bad_request"


class ValidationFailed(ApiError):
    status = 400
    code = "validation_error"

    def __init__(
        self, fields: dict[str, list[str]], message: str = "The request has invalid fields."
    ) -> None:
        super().__init__(message, fields=fields)


class Unauthenticated(ApiError):
    status = 401
    code = "unauthenticated"

    def __init__(self, message: str = "Authentication required.") -> None:
        super().__init__(message, headers={"WWW-Authenticate": 'Bearer realm="api"'})


class InvalidCredentials(ApiError):
    status = 401
    code = "invalid_credentials"

    def __init__(self) -> None:
        super().__init__("Invalid username or password.", headers={"WWW-Authenticate": 'Bearer realm="api"'})


class Forbidden(ApiError):
    status = 403
    code = "forbidden"


class NotFound(ApiError):
    status = 404
    code = "not_found"


class MethodNotAllowed(ApiError):
    status = 405
    code = "method_not_allowed"

    def __init__(self, method: str, allowed: Iterable[str]) -> None:
        allow = ", ".join(sorted(allowed))
        super().__init__(f"Method {method} is not allowed here; use {allow}.", headers={"Allow": allow})


class Conflict(ApiError):
    status = 409
    code = "conflict"


class PayloadTooLarge(ApiError):
    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(ApiError):
    status = 415
    code = "unsupported_media_type"


class DeadlineExceeded(ApiError):
    """The gateway's deadline for this request (``X-Request-Deadline``) passed before work began."""

    status = 503
    code = "deadline_exceeded"

    def __init__(self) -> None:
        super().__init__(
            "The request waited too long to be served and was not processed; retry shortly.",
            headers={"Retry-After": "1"},
        )


class Unavailable(ApiError):
    """The database could not finish the request now (a lock timeout, a deadlock, a lost connection):
    the transaction was rolled back, so nothing was written and a retry is safe."""

    status = 503
    code = "unavailable"

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"Retry-After": "1"})
