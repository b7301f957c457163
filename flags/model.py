"""The routing-decision vocabulary: evaluation context, decision, override, hot routes."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal

Backend = Literal["legacy", "candidate"]
BACKENDS: tuple[Backend, ...] = ("legacy", "candidate")
FLAG_PREFIX = "route."
# The hot routes as ARCHITECTURE.md lists them; the gateway's route table may name more.
HOT_ROUTES: tuple[str, ...] = (
    "reviews.list",
    "reviews.summary",
    "reviews.detail",
    "reviews.create",
    "reviews.helpful",
    "reviews.delete",
    "reviews.mine",
    "recommendations.home",
    "recommendations.similar",
    "recommendations.recent",
)


def flag_key(route_id: str) -> str:
    """``reviews.list`` → ``route.reviews.list``: one name for the route and its flag."""
    return FLAG_PREFIX + route_id


@dataclass(frozen=True, kw_only=True, slots=True)
class EvaluationContext:
    user_id: str = ""
    session_id: str = ""
    remote_address: str = ""
    app_version: str = ""
    platform: str = ""

    def unleash(self) -> dict[str, Any]:
        """The context as Unleash reads it (empty fields left out, extra fields as properties)."""
        context: dict[str, Any] = {}
        if self.user_id:
            context["userId"] = self.user_id
        if self.session_id:
            context["sessionId"] = self.session_id
        if self.remote_address:
            context["remoteAddress"] = self.remote_address
        properties = {}
        if self.app_version:
            properties["appVersion"] = self.app_version
        if self.platform:
            properties["platform"] = self.platform
        if properties:
            context["properties"] = properties
        return context


@dataclass(frozen=True, kw_only=True, slots=True)
class Decision:
    backend: Backend
    # override | static | split | targeting_match | default | disabled | stale | error (OpenFeature words)
    reason: str
    flag: str
    variant: str | None = None
    # Which layer answered: override | unleash | file | default.
    source: str = "default"


@dataclass(frozen=True, kw_only=True, slots=True)
class Override:
    """A kill switch for one route: send it to ``backend`` (or ``percent`` % of users to candidate)."""

    route: str
    backend: Backend
    reason: str
    actor: str
    at: float
    percent: int | None = None
    expires_at: float | None = None

    def active(self, now: float | None = None) -> bool:
        return self.expires_at is None or (time.time() if now is None else now) < self.expires_at

    def to_json(self) -> dict[str, Any]:
        return {
            "route": self.route,
            "backend": self.backend,
            "percent": self.percent,
            "reason": self.reason,
            "actor": self.actor,
            "at": self.at,
            "expires_at": self.expires_at,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Override:
        backend = data["backend"]
        if backend not in BACKENDS:
            raise ValueError(f"backend must be legacy or candidate, got {backend!r}")
        percent = data.get("percent")
        if percent is not None and not (isinstance(percent, int) and 0 <= percent <= 100):
            raise ValueError(f"percent must be 0..100, got {percent!r}")
        return cls(
            route=str(data["route"]),
            backend=backend,
            percent=percent,
            reason=str(data["reason"]),
            actor=str(data["actor"]),
            at=float(data["at"]),
            expires_at=None if data.get("expires_at") is None else float(data["expires_at"]),
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class AuditEntry:
    """One change to the overrides: who, when, why, before and after (None = no override)."""

    route: str
    actor: str
    reason: str
    at: float
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    action: str = field(default="set")  # set | release

    def to_json(self) -> dict[str, Any]:
        return {
            "route": self.route,
            "action": self.action,
            "actor": self.actor,
            "reason": self.reason,
            "at": self.at,
            "before": self.before,
            "after": self.after,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AuditEntry:
        return cls(
            route=str(data["route"]),
            action=str(data.get("action", "set")),
            actor=str(data["actor"]),
            reason=str(data["reason"]),
            at=float(data["at"]),
            before=data.get("before"),
            after=data.get("after"),
        )
