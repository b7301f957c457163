"""The gateway's exceptions and the JSON error envelope (the tree is in the package docstring)."""

from __future__ import annotations

from typing import Any


def envelope(
    code: str, message: str, request_id: str, fields: dict[str, list[str]] | None = None
) -> dict[str, Any]:
    """The JSON error body every client-visible error uses, gateway and backends alike (docs/api.md)."""
    error: dict[str, Any] = {"code": code, "message": message, "request_id": request_id}
    if fields:
        error["fields"] = fields
    return {"error": error}


class GatewayError(Exception):
    pass


class TokenInvalid(GatewayError):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class UpstreamError(GatewayError):
    def __init__(self, stage: str, detail: str = "") -> None:
        super().__init__(f"{stage}: {detail}" if detail else stage)
        self.stage = stage


class UpstreamConnectError(UpstreamError):
    pass


class UpstreamTimeout(UpstreamError):
    pass


class CircuitOpen(GatewayError):
    pass


class Overloaded(GatewayError):
    pass


class Truncated(GatewayError):
    """The backend failed after the response started: nothing to do but drop the client connection."""


class Reject(Exception):
    """The gateway refuses a request itself (not a backend failure): status, code and message of the
    envelope, plus headers such as ``WWW-Authenticate``, ``Allow`` or ``Retry-After``."""

    def __init__(
        self, status: int, code: str, message: str, headers: list[tuple[bytes, bytes]] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or []
