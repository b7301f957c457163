"""The gateway's exception tree (documented in the package docstring)."""

from __future__ import annotations

from typing import Any


def envelope(
    code: str, message: str, request_id: str, fields: dict[str, list[str]] | None = None
) -> dict[str, Any]:
    """The JSON error body every client-visible error uses (ARCHITECTURE.md)."""
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
