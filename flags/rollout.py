"""Progressive rollouts (ADR 0016): what a rollout is, the checks on what a person asks for, and the
changes a person makes (start, pause, resume, abort), as pure functions.

A rollout moves one hot route to its candidate in steps (``--steps 1,5,25,50,100``); the gateway's
decider (``gateway/rollout.py``) advances a step once every gate passed for a whole window
(``--every``), and rolls the route back when one fails. The state lives in the override store (beside
the overrides, written with them in one conditional write: ``OverrideStore.apply(…, rollout=…)``), so
``flagctl``, the admin API and every gateway process see the same rollout and a gateway restart
resumes it. Every step is an ordinary override with actor ``rollout``; the rollout remembers the
override it wrote last (``applied``): a different one in force means a person acted, and the
decider pauses the rollout.

States: ``queued`` (``--all``: waiting for the routes before it), ``running``, ``paused``,
``rolling_back`` (latency: stepping down), and the final ``done``, ``rolled_back``, ``aborted``.
Each write carries ``version``, one more than the stored rollout's: a write based on an older read
is refused (``OverrideConflict``) and nothing is written.

Nothing here knows about HTTP or the gateway; the gate figures (``window``, ``gates``,
``baseline``) are JSON objects the decider owns.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from flags.model import (
    MAX_ACTOR_CHARS,
    MAX_REASON_CHARS,
    MAX_ROUTE_CHARS,
    InvalidOverride,
    Override,
    note_problems,
)

ACTOR = "rollout"
QUEUED, RUNNING, PAUSED, ROLLING_BACK = "queued", "running", "paused", "rolling_back"
DONE, ROLLED_BACK, ABORTED = "done", "rolled_back", "aborted"
STATES = (QUEUED, RUNNING, PAUSED, ROLLING_BACK, DONE, ROLLED_BACK, ABORTED)
ACTIVE = frozenset({QUEUED, RUNNING, PAUSED, ROLLING_BACK})  # not over: one per route at a time
DECIDING = frozenset({RUNNING, ROLLING_BACK})  # the decider judges these every tick
MAX_STEPS = 20
MIN_EVERY_SECONDS = 1
MAX_EVERY_SECONDS = 86_400
MAX_SAMPLES = 1_000_000
MAX_RATIO = 1_000.0
HISTORY_KEPT = 40  # the start and the last changes; a rollout's document stays small
READ_METHODS = frozenset({"GET", "HEAD"})


class InvalidRollout(InvalidOverride):
    """A rollout request (or a stored rollout) with bad values; ``fields`` names each, as the admin
    API names them (``steps``, ``every_seconds``, ``min_samples``, ``min_parity``, …)."""


class RolloutStateError(ValueError):
    """The change does not fit the rollout's state (pause a rollout that is not running, start one on
    a route whose rollout is not over, …); nothing is written."""


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True, kw_only=True, slots=True)
class Plan:
    """What a person asks for: the steps (percent to the candidate) and the gates of each step."""

    steps: tuple[int, ...]
    every_seconds: float
    min_samples: int = 200
    min_parity: float = 99.9  # percent of compared answers that must match
    max_error_ratio: float = 1.0  # candidate error rate <= legacy's x this (+ ERROR_FLOOR_PERCENT)
    max_p99_ratio: float = 1.2  # candidate p99 <= legacy's x this

    def __post_init__(self) -> None:
        problems = plan_problems(
            self.steps,
            self.every_seconds,
            self.min_samples,
            self.min_parity,
            self.max_error_ratio,
            self.max_p99_ratio,
        )
        if problems:
            raise InvalidRollout(problems)

    @classmethod
    def create(
        cls,
        *,
        steps: Any,
        every_seconds: Any,
        min_samples: Any = 200,
        min_parity: Any = 99.9,
        max_error_ratio: Any = 1.0,
        max_p99_ratio: Any = 1.2,
    ) -> Plan:
        """A plan from values as they came (admin API JSON, flagctl options): every problem at once."""
        problems = plan_problems(
            steps, every_seconds, min_samples, min_parity, max_error_ratio, max_p99_ratio
        )
        if problems:
            raise InvalidRollout(problems)
        return cls(
            steps=tuple(steps),
            every_seconds=float(every_seconds),
            min_samples=int(min_samples),
            min_parity=float(min_parity),
            max_error_ratio=float(max_error_ratio),
            max_p99_ratio=float(max_p99_ratio),
        )


def plan_problems(
    steps: object,
    every_seconds: object,
    min_samples: object,
    min_parity: object,
    max_error_ratio: object,
    max_p99_ratio: object,
) -> dict[str, list[str]]:
    fields: dict[str, list[str]] = {}
    if (
        not isinstance(steps, list | tuple)
        or not 1 <= len(steps) <= MAX_STEPS
        or not all(type(step) is int and 0 <= step <= 100 for step in steps)
    ):
        fields["steps"] = [f"must be 1 to {MAX_STEPS} whole percentages from 0 to 100, e.g. 1,5,25,50,100"]
    elif any(later <= earlier for earlier, later in itertools.pairwise(steps)):
        fields["steps"] = ["must increase, each step more than the one before"]
    elif steps[-1] == 0:
        fields["steps"] = ["must send some traffic to the candidate: the last step is above 0"]
    if not (_number(every_seconds) and MIN_EVERY_SECONDS <= every_seconds <= MAX_EVERY_SECONDS):  # type: ignore[operator]
        fields["every_seconds"] = [
            f"must be a window of {MIN_EVERY_SECONDS} s to {MAX_EVERY_SECONDS} s (1 day), e.g. 60s"
        ]
    if type(min_samples) is not int or not 1 <= min_samples <= MAX_SAMPLES:
        fields["min_samples"] = [f"must be a whole number from 1 to {MAX_SAMPLES:,}"]
    if not (_number(min_parity) and 0 < min_parity <= 100):  # type: ignore[operator]
        fields["min_parity"] = ["must be a percentage above 0 and at most 100"]
    if not (_number(max_error_ratio) and 0 <= max_error_ratio <= MAX_RATIO):  # type: ignore[operator]
        fields["max_error_ratio"] = [f"must be a number from 0 to {MAX_RATIO:g}"]
    if not (_number(max_p99_ratio) and 0 < max_p99_ratio <= MAX_RATIO):  # type: ignore[operator]
        fields["max_p99_ratio"] = [f"must be a number above 0 and at most {MAX_RATIO:g}"]
    return fields


def parse_steps(raw: str) -> list[int] | None:
    """``"1,5,25,50,100"`` → [1, 5, 25, 50, 100]; None when a part is not a whole number."""
    parts = [part.strip() for part in raw.split(",")]
    if not all(part.isascii() and part.isdigit() for part in parts):
        return None
    return [int(part) for part in parts]


def route_problems(route: object, known: Sequence[str], readable: Sequence[str]) -> dict[str, list[str]]:
    """A route a rollout can move: one of the table's, and a read (GET/HEAD) route, because the
    parity gate compares shadowed answers and a write is never sent twice."""
    if not isinstance(route, str) or route not in known:
        return {"route": ["must be a route id of the route table"]}
    if route not in readable:
        return {
            "route": [
                "is a write route: a rollout needs parity evidence, and writes are never shadowed "
                "(move it with an override and a percentage)"
            ]
        }
    return {}


def _clip(text: str, limit: int = MAX_REASON_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _mapping(value: object, name: str, fields: dict[str, list[str]]) -> dict[str, Any]:
    if not isinstance(value, dict):
        fields[name] = ["must be a JSON object"]
        return {}
    return value


@dataclass(frozen=True, kw_only=True, slots=True)
class Rollout:
    route: str
    plan: Plan
    state: str
    step: int  # 1-based index into plan.steps of the step in force; 0 before the first
    percent: int  # what the rollout's override sends to the candidate now
    started_by: str
    start_reason: str
    started_at: float
    reason: str  # why it is where it is now (its last decision), in words
    updated_at: float
    step_started_at: float  # when the current step (or pause, or step down) began
    counted_until: int  # the newest whole second counted into ``window``
    window: Mapping[str, Any] = field(default_factory=dict)  # the current window's evidence (decider's)
    gates: Mapping[str, Any] = field(default_factory=dict)  # the figures of the last judgement
    baseline: Mapping[str, Any] | None = None  # legacy's figures from the last window it served enough
    shadow_rate: float = 0.0  # share of the route's reads shadowed while it runs (decider's)
    applied: Override | None = None  # the override this rollout wrote last
    history: tuple[Mapping[str, Any], ...] = ()
    batch: str | None = None  # --all: the rollouts of one batch run one after another
    position: int = 0
    version: int = 1

    def __post_init__(self) -> None:
        fields: dict[str, list[str]] = {}
        if not isinstance(self.route, str) or not 0 < len(self.route) <= MAX_ROUTE_CHARS:
            fields["route"] = [f"must be a route id (1 to {MAX_ROUTE_CHARS} characters)"]
        if self.state not in STATES:
            fields["state"] = [f"must be one of {', '.join(STATES)}"]
        if type(self.step) is not int or not 0 <= self.step <= len(self.plan.steps):
            fields["step"] = ["must be a step of the plan (0 before the first)"]
        if type(self.percent) is not int or not 0 <= self.percent <= 100:
            fields["percent"] = ["must be a whole number from 0 to 100"]
        for name, value, limit in (
            ("started_by", self.started_by, MAX_ACTOR_CHARS),
            ("start_reason", self.start_reason, MAX_REASON_CHARS),
            ("reason", self.reason, MAX_REASON_CHARS),
        ):
            if not isinstance(value, str) or not value.strip() or len(value) > limit:
                fields[name] = [f"must be a non-empty string of at most {limit} characters"]
        for name in ("started_at", "updated_at", "step_started_at", "shadow_rate"):
            if not _number(getattr(self, name)) or getattr(self, name) < 0:
                fields[name] = ["must be a number, at least 0"]
        if type(self.counted_until) is not int or type(self.version) is not int or self.version < 1:
            fields["version"] = ["counted_until and version must be whole numbers (version from 1)"]
        if not 0 <= self.shadow_rate <= 1:
            fields["shadow_rate"] = ["must be 0 to 1"]
        if self.batch is not None and not (isinstance(self.batch, str) and len(self.batch) <= 64):
            fields["batch"] = ["must be a short string or null"]
        if fields:
            raise InvalidRollout(fields)

    @property
    def active(self) -> bool:
        return self.state in ACTIVE

    @property
    def final_step(self) -> bool:
        return self.step == len(self.plan.steps)

    def to_json(self) -> dict[str, Any]:
        plan = self.plan
        return {
            "route": self.route,
            "state": self.state,
            "percent": self.percent,
            "step": self.step,
            "steps": list(plan.steps),
            "reason": self.reason,
            "every_seconds": plan.every_seconds,
            "min_samples": plan.min_samples,
            "min_parity": plan.min_parity,
            "max_error_ratio": plan.max_error_ratio,
            "max_p99_ratio": plan.max_p99_ratio,
            "started_by": self.started_by,
            "start_reason": self.start_reason,
            "started_at": self.started_at,
            "updated_at": self.updated_at,
            "step_started_at": self.step_started_at,
            "counted_until": self.counted_until,
            "gates": dict(self.gates),
            "window": dict(self.window),
            "baseline": dict(self.baseline) if self.baseline is not None else None,
            "shadow_rate": self.shadow_rate,
            "applied": self.applied.to_json() if self.applied is not None else None,
            "history": [dict(event) for event in self.history],
            "batch": self.batch,
            "position": self.position,
            "version": self.version,
        }

    @classmethod
    def from_json(cls, data: object) -> Rollout:
        """Raises ``InvalidRollout`` (a ``ValueError``) for anything but a well-formed rollout."""
        if not isinstance(data, dict):
            raise InvalidRollout({"rollout": ["must be a JSON object"]})
        fields: dict[str, list[str]] = {}
        try:
            plan = Plan.create(
                steps=data["steps"],
                every_seconds=data["every_seconds"],
                min_samples=data["min_samples"],
                min_parity=data["min_parity"],
                max_error_ratio=data["max_error_ratio"],
                max_p99_ratio=data["max_p99_ratio"],
            )
            applied = data.get("applied")
            history = data.get("history", [])
            if not isinstance(history, list) or not all(isinstance(event, dict) for event in history):
                fields["history"] = ["must be a list of JSON objects"]
            baseline = data.get("baseline")
            rollout = cls(
                route=data["route"],
                plan=plan,
                state=data["state"],
                step=data["step"],
                percent=data["percent"],
                started_by=data["started_by"],
                start_reason=data["start_reason"],
                started_at=data["started_at"],
                reason=data["reason"],
                updated_at=data["updated_at"],
                step_started_at=data["step_started_at"],
                counted_until=data["counted_until"],
                window=_mapping(data.get("window", {}), "window", fields),
                gates=_mapping(data.get("gates", {}), "gates", fields),
                baseline=None if baseline is None else _mapping(baseline, "baseline", fields),
                shadow_rate=data.get("shadow_rate", 0.0),
                applied=None if applied is None else Override.from_json(applied),
                history=tuple(history) if "history" not in fields else (),
                batch=data.get("batch"),
                position=data.get("position", 0),
                version=data.get("version", 1),
            )
        except KeyError as missing:
            raise InvalidRollout({str(missing.args[0]): ["is missing"]}) from None
        if fields:
            raise InvalidRollout(fields)
        return rollout


def event(rollout: Rollout, action: str, *, at: float, by: str, reason: str, **extra: Any) -> Rollout:
    """``rollout`` with one more history entry (the start and the last ``HISTORY_KEPT - 1`` are kept)."""
    entry = {"at": at, "action": action, "by": by, "percent": rollout.percent, "reason": reason, **extra}
    history = (*rollout.history, entry)
    if len(history) > HISTORY_KEPT:
        history = (history[0], *history[-(HISTORY_KEPT - 1) :])
    return dataclasses.replace(rollout, history=history)


def step_override(route: str, percent: int, reason: str, now: float) -> Override:
    """The override a rollout writes for ``percent``: 0 is legacy, anything else that share of users
    to the candidate (sticky per user, as every percentage)."""
    if percent == 0:
        return Override.create(route=route, backend="legacy", reason=_clip(reason), actor=ACTOR, now=now)
    return Override.create(
        route=route, backend="candidate", percent=percent, reason=_clip(reason), actor=ACTOR, now=now
    )


def person_override(override: Override) -> str:
    """``bob set legacy (not tonight)``: who holds a route, in words."""
    share = f" {override.percent} %" if override.percent is not None else ""
    return f"{override.actor} set {override.backend}{share} ({override.reason})"


def _fresh_window(rollout: Rollout, now: float, **changes: Any) -> Rollout:
    """A new window from ``now``: only whole seconds after this one count."""
    return dataclasses.replace(
        rollout, step_started_at=now, counted_until=int(now), window={}, updated_at=now, **changes
    )


def _who(actor: str, reason: str) -> str:
    return f"{actor}: {reason}"


def begin(rollout: Rollout, now: float) -> tuple[Rollout, Override]:
    """A rollout's first step (at start, or when its turn in a batch comes): the override to write."""
    percent = rollout.plan.steps[0]
    why = _clip(
        f"step 1/{len(rollout.plan.steps)}: {percent} % to the candidate "
        f"(started by {_who(rollout.started_by, rollout.start_reason)})"
    )
    override = step_override(rollout.route, percent, why, now)
    started = _fresh_window(
        rollout, now, state=RUNNING, step=1, percent=percent, reason=why, applied=override, gates={}
    )
    return event(started, "start", at=now, by=rollout.started_by, reason=why), override


def start(
    route: str,
    plan: Plan,
    *,
    actor: str,
    reason: str,
    now: float,
    previous: Rollout | None,
    queued: bool = False,
    batch: str | None = None,
    position: int = 0,
) -> tuple[Rollout, Override | None]:
    """A new rollout of ``route`` (replacing a finished one), and the override of its first step
    (None when it is ``queued`` behind others of its batch)."""
    problems = note_problems(actor, reason)
    if problems:
        raise InvalidRollout(problems)
    if previous is not None and previous.active:
        raise RolloutStateError(
            f"{route} has a rollout in progress ({previous.state}, {previous.percent} %): "
            "resume, pause or abort that one first"
        )
    rollout = Rollout(
        route=route,
        plan=plan,
        state=QUEUED,
        step=0,
        percent=0,
        started_by=actor,
        start_reason=_clip(reason),
        started_at=now,
        reason=_clip(f"queued: starts after the rollouts before it in its batch (started by {actor})"),
        updated_at=now,
        step_started_at=now,
        counted_until=int(now),
        batch=batch,
        position=position,
        version=previous.version + 1 if previous is not None else 1,
    )
    if queued:
        return event(rollout, "queue", at=now, by=actor, reason=rollout.reason), None
    return begin(rollout, now)


def revised(rollout: Rollout, now: float, **changes: Any) -> Rollout:
    """``rollout`` changed at ``now``: the next version (the store refuses it over any other)."""
    return dataclasses.replace(rollout, version=rollout.version + 1, updated_at=now, **changes)


def pause(rollout: Rollout, *, actor: str, reason: str, now: float) -> Rollout:
    """Hold the route where it is: the decider stops judging it until it is resumed."""
    problems = note_problems(actor, reason)
    if problems:
        raise InvalidRollout(problems)
    if rollout.state != RUNNING:
        raise RolloutStateError(f"{rollout.route}'s rollout is {rollout.state}: only a running one pauses")
    why = _clip(f"paused at {rollout.percent} % by {_who(actor, reason)}")
    paused = revised(rollout, now, state=PAUSED, reason=why)
    return event(paused, "pause", at=now, by=actor, reason=why)


def resume(rollout: Rollout, *, actor: str, reason: str, now: float) -> tuple[Rollout, Override]:
    """Carry on from the step it was paused at, with a fresh window; the override of that step is
    written again (a person's override made while it was paused is taken over)."""
    problems = note_problems(actor, reason)
    if problems:
        raise InvalidRollout(problems)
    if rollout.state != PAUSED:
        raise RolloutStateError(f"{rollout.route}'s rollout is {rollout.state}: only a paused one resumes")
    if rollout.step == 0:  # paused before its turn came: it starts
        first, override = begin(revised(rollout, now), now)
        return event(first, "resume", at=now, by=actor, reason=first.reason), override
    why = _clip(
        f"step {rollout.step}/{len(rollout.plan.steps)}: {rollout.percent} % to the candidate "
        f"(resumed by {_who(actor, reason)})"
    )
    override = step_override(rollout.route, rollout.percent, why, now)
    resumed = _fresh_window(revised(rollout, now), now, state=RUNNING, reason=why, applied=override, gates={})
    return event(resumed, "resume", at=now, by=actor, reason=why), override


def abort(rollout: Rollout, *, actor: str, reason: str, now: float) -> tuple[Rollout, Override | None]:
    """Stop for good and send the route back to legacy at once (a queued one has nothing to send back)."""
    problems = note_problems(actor, reason)
    if problems:
        raise InvalidRollout(problems)
    if not rollout.active:
        raise RolloutStateError(f"{rollout.route}'s rollout is already over ({rollout.state})")
    why = _clip(f"aborted at {rollout.percent} % by {_who(actor, reason)}: back to legacy")
    override = None if rollout.step == 0 else step_override(rollout.route, 0, why, now)
    aborted = revised(
        rollout,
        now,
        state=ABORTED,
        percent=0,
        reason=why,
        applied=override if override is not None else rollout.applied,
        shadow_rate=0.0,
    )
    return event(aborted, "abort", at=now, by=actor, reason=why), override


def person_kept(aborted: Rollout, before: Rollout, current: Override | None) -> Rollout:
    """``aborted`` when the route no longer holds the override ``before`` wrote (a person's change
    while it ran): nothing is sent back, the person's override stays."""
    held = "no override" if current is None else person_override(current)
    why = _clip(f"{aborted.reason.partition(': back to legacy')[0]}; the route keeps {held}")
    entry = {**aborted.history[-1], "reason": why}
    return dataclasses.replace(
        aborted, reason=why, applied=before.applied, history=(*aborted.history[:-1], entry)
    )


def start_routes(
    routes: Sequence[str],
    plan: Plan,
    *,
    actor: str,
    reason: str,
    now: float,
    existing: Mapping[str, Rollout],
    overrides: Mapping[str, Override] | None = None,
) -> list[tuple[Rollout, Override | None]]:
    """One rollout per route; with several (``--all``), one batch: the first starts now, the others
    queue behind it in order. Refused whole when any of them has a rollout in progress, or an override
    in force set by a person (``overrides``: a rollout never overwrites a person's decision)."""
    busy = [
        f"{route} ({existing[route].state})"
        for route in routes
        if route in existing and existing[route].active
    ]
    if busy:
        raise RolloutStateError(
            f"a rollout is in progress for {', '.join(busy)}: resume, pause or abort it first"
        )
    held = [
        f"{route} ({person_override(override)})"
        for route in routes
        if (override := (overrides or {}).get(route)) is not None
        and override.actor != ACTOR
        and override.active(now)
    ]
    if held:
        raise RolloutStateError(
            f"a person's override holds {', '.join(held)}: release it first "
            "(`flagctl release ROUTE`), or leave the route out"
        )
    batch = f"batch-{int(now)}" if len(routes) > 1 else None
    return [
        start(
            route,
            plan,
            actor=actor,
            reason=reason,
            now=now,
            previous=existing.get(route),
            queued=position > 0,
            batch=batch,
            position=position,
        )
        for position, route in enumerate(routes)
    ]


# A person's change: (rollout, actor, reason, now) → the changed rollout and the override to write.
PersonChange = Callable[[Rollout, str, str, float], tuple[Rollout, Override | None]]


def _pause(rollout: Rollout, actor: str, reason: str, now: float) -> tuple[Rollout, Override | None]:
    return pause(rollout, actor=actor, reason=reason, now=now), None


def _resume(rollout: Rollout, actor: str, reason: str, now: float) -> tuple[Rollout, Override | None]:
    return resume(rollout, actor=actor, reason=reason, now=now)


def _abort(rollout: Rollout, actor: str, reason: str, now: float) -> tuple[Rollout, Override | None]:
    return abort(rollout, actor=actor, reason=reason, now=now)


# What flagctl and the admin API offer besides start: each change, and the states ``--all`` applies it to.
PERSON_CHANGES: dict[str, tuple[frozenset[str], PersonChange]] = {
    "pause": (frozenset({RUNNING}), _pause),
    "resume": (frozenset({PAUSED}), _resume),
    "abort": (ACTIVE, _abort),
}
