"""The gateway's exception tree (documented in the package docstring)."""

from __future__ import annotations


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
