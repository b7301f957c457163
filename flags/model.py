"""The routing-decision vocabulary: evaluation context, decision, override, flag names, and
the bounds every override and audit entry is checked against when built (``InvalidOverride``).

The hot routes themselves are the gateway's route table (``flags.routes_file``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal

Backend = Literal["legacy", "candidate"]
BACKENDS: tuple[Backend, ...] = ("legacy", "candidate")
FLAG_PREFIX = "route."


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


# Bounds on what a person may write into an override or the audit trail. Every reader renders
# these (the console every 2 s, flagctl), and nothing a store holds may be what JSON cannot carry
# (NaN, Infinity): one bad value must never take the admin API down with it.
MAX_ROUTE_CHARS = 100
MAX_ACTOR_CHARS = 200
MAX_REASON_CHARS = 500
MAX_TTL_SECONDS = 7 * 86_400
# A time in seconds since the epoch: finite, not before 1970, not after the year 5138.
_MAX_TIMESTAMP = 1e11
AUDIT_ACTIONS = ("set", "release")


class InvalidOverride(ValueError):
    """An override, or an audit entry, with bad values. ``fields`` maps each bad field (named as the
    admin API names it) to what is wrong; the messages never repeat the value itself."""

    def __init__(self, fields: dict[str, list[str]]) -> None:
        super().__init__("; ".join(f"{name} {' and '.join(problems)}" for name, problems in fields.items()))
        self.fields = fields


def _is_number(value: object) -> bool:
    # bool is an int to Python, never to us; NaN fails every comparison the callers make.
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_timestamp(value: object) -> bool:
    return _is_number(value) and 0 <= value <= _MAX_TIMESTAMP  # type: ignore[operator]


def _text_problem(value: object, limit: int) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return "is required (a non-empty string)"
    if len(value) > limit:
        return f"must be at most {limit} characters"
    return None


def note_problems(actor: object, reason: object) -> dict[str, list[str]]:
    """What is wrong with the who and the why of a change (empty when nothing is)."""
    fields: dict[str, list[str]] = {}
    for name, value, limit in (("actor", actor, MAX_ACTOR_CHARS), ("reason", reason, MAX_REASON_CHARS)):
        problem = _text_problem(value, limit)
        if problem is not None:
            fields[name] = [problem]
    return fields


def _route_problem(route: object) -> str | None:
    if not isinstance(route, str) or not route or len(route) > MAX_ROUTE_CHARS:
        return f"must be a route id (1 to {MAX_ROUTE_CHARS} characters)"
    return None


def _override_problems(
    route: object, backend: object, percent: object, actor: object, reason: object, at: object
) -> dict[str, list[str]]:
    fields = note_problems(actor, reason)
    problem = _route_problem(route)
    if problem is not None:
        fields["route"] = [problem]
    if not isinstance(backend, str) or backend not in BACKENDS:
        fields["backend"] = ["must be legacy or candidate"]
    if percent is not None and not (type(percent) is int and 0 <= percent <= 100):
        fields["percent"] = ["must be an integer 0..100"]
    elif percent is not None and backend != "candidate":
        fields["percent"] = ["is the candidate's share: use it with backend candidate"]
    if not _is_timestamp(at):
        fields["at"] = ["must be a time in seconds since the epoch"]
    return fields


@dataclass(frozen=True, kw_only=True, slots=True)
class Override:
    """A kill switch for one route: send it to ``backend`` (or ``percent`` % of users to candidate).

    Checked when built (``InvalidOverride``), whoever builds it: the admin API and flagctl through
    ``create``, the stores through ``from_json`` (a stored entry that fails is skipped, not fatal).
    """

    route: str
    backend: Backend
    reason: str
    actor: str
    at: float
    percent: int | None = None
    expires_at: float | None = None

    def __post_init__(self) -> None:
        fields = _override_problems(self.route, self.backend, self.percent, self.actor, self.reason, self.at)
        if self.expires_at is not None and not _is_timestamp(self.expires_at):
            fields["expires_at"] = ["must be a time in seconds since the epoch"]
        if fields:
            raise InvalidOverride(fields)

    @classmethod
    def create(
        cls,
        *,
        route: Any,
        backend: Any,
        reason: Any,
        actor: Any,
        percent: Any = None,
        ttl_seconds: Any = None,
        now: float | None = None,
    ) -> Override:
        """A new override as a person asks for it (admin API, flagctl), values as they came: every
        problem at once in ``InvalidOverride.fields``; ``ttl_seconds`` is more than 0 and at most
        ``MAX_TTL_SECONDS`` (7 days: an override is for an incident, not a release)."""
        at = time.time() if now is None else now
        fields = _override_problems(route, backend, percent, actor, reason, at)
        if ttl_seconds is not None and not (_is_number(ttl_seconds) and 0 < ttl_seconds <= MAX_TTL_SECONDS):
            fields["ttl_seconds"] = [
                f"must be a number of seconds, more than 0 and at most {MAX_TTL_SECONDS} (7 days)"
            ]
        if fields:
            raise InvalidOverride(fields)
        expires_at = None if ttl_seconds is None else at + float(ttl_seconds)
        return cls(
            route=route,
            backend=backend,
            percent=percent,
            reason=reason,
            actor=actor,
            at=at,
            expires_at=expires_at,
        )

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
    def from_json(cls, data: object) -> Override:
        """Raises ``InvalidOverride`` (a ``ValueError``) for anything but a well-formed override."""
        if not isinstance(data, dict):
            raise InvalidOverride({"override": ["must be a JSON object"]})
        try:
            return cls(
                route=data["route"],
                backend=data["backend"],
                percent=data.get("percent"),
                reason=data["reason"],
                actor=data["actor"],
                at=data["at"],
                expires_at=data.get("expires_at"),
            )
        except KeyError as missing:
            raise InvalidOverride({str(missing.args[0]): ["is missing"]}) from None


@dataclass(frozen=True, kw_only=True, slots=True)
class AuditEntry:
    """One change to the overrides: who, when, why, before and after (None = no override).

    Checked when built like ``Override``: the stores build entries before writing anything, so a
    change with a bad actor or reason is refused whole.
    """

    route: str
    actor: str
    reason: str
    at: float
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    action: str = field(default="set")  # set | release

    def __post_init__(self) -> None:
        fields = note_problems(self.actor, self.reason)
        problem = _route_problem(self.route)
        if problem is not None:
            fields["route"] = [problem]
        if self.action not in AUDIT_ACTIONS:
            fields["action"] = ["must be set or release"]
        if not _is_timestamp(self.at):
            fields["at"] = ["must be a time in seconds since the epoch"]
        for name, value in (("before", self.before), ("after", self.after)):
            if value is None:
                continue
            try:
                Override.from_json(value)
            except InvalidOverride as exc:
                fields[name] = [f"must be an override or null ({exc})"]
        if fields:
            raise InvalidOverride(fields)

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
    def from_json(cls, data: object) -> AuditEntry:
        """Raises ``InvalidOverride`` (a ``ValueError``) for anything but a well-formed entry."""
        if not isinstance(data, dict):
            raise InvalidOverride({"entry": ["must be a JSON object"]})
        try:
            return cls(
                route=data["route"],
                action=data.get("action", "set"),
                actor=data["actor"],
                reason=data["reason"],
                at=data["at"],
                before=data.get("before"),
                after=data.get("after"),
            )
        except KeyError as missing:
            raise InvalidOverride({str(missing.args[0]): ["is missing"]}) from None
