"""Auto-offload (ADR 0014): move parity-proven routes off a shedding legacy by themselves, and back.

This module owns the route table's ``[autopilot]`` policy (``AutopilotPolicy``), the decision as a
pure function (``decide``: figures in, steps out) and the loop every gateway worker runs
(``Autopilot``). Only the worker holding the lease ``autopilot`` in the override store decides, so
one decider acts at a time across every gateway process that shares the store (the lease and the
loop are gateway/decider.py's, shared with rollouts).

* **Offload**: legacy (the default cluster) counts as shedding when its adaptive limit shed requests
  in at least ``SHED_FRACTION`` (80 %, rounded up) of the last ``shed_window_seconds`` seconds; the
  figures are read over ``shed_window_seconds + 1`` seconds, because the second in progress is still
  being counted and the other workers publish theirs once a second. Then every route with
  ``auto_offload = true`` that is decided ``legacy`` today (no human's override in force), whose
  shadow parity over ``PARITY_WINDOW_SECONDS`` is at least ``min_parity_percent`` over at least
  ``min_samples`` comparisons, and whose candidate is healthy (breaker closed, at most
  ``max_candidate_error_percent`` of its shadow requests failed) gets an ordinary override
  ``backend = candidate``, actor ``autopilot``, the figures in its reason, TTL ``ttl_seconds``.
* **Return**: once legacy has not shed for ``cooldown_seconds``, every override whose actor is
  ``autopilot`` is released. Shedding again during the cool-down starts it afresh, and a decider that
  takes over (restart, failover) starts it afresh too: it does not know what legacy did before.

Every write names the override it expects to find (``expected``): a human's change made between the
decider's read and its write wins, and the decider leaves that route alone. The decider never raises
out of its loop: a store that fails or is slow (``decider.STORE_TIMEOUT_SECONDS``) is logged and tried
again at the next tick.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from flags.model import MAX_TTL_SECONDS, AuditEntry, Override
from flags.overrides import OverrideConflict, OverrideStoreError
from gateway.decider import STORE_TIMEOUT_SECONDS, Lease, lease_seconds, run_every, store_call
from gateway.live import PARITY_WINDOW_SECONDS, WINDOW_SECONDS, LiveStats
from gateway.table_fields import typed_values

if TYPE_CHECKING:
    from gateway.runtime import Runtime

logger = logging.getLogger("gateway.autopilot")

ACTOR = "autopilot"
# Routes go back when legacy would carry their traffic at most at this share of its capacity.
RETURN_HEADROOM = 0.8
LEASE_NAME = "autopilot"
# Share of the shed window's seconds in which legacy must have shed: one quiet second (a worker's
# figures published a second late, a lull between bursts) does not reset the window.
SHED_FRACTION = 0.8


class AutopilotConfigError(ValueError):
    """An ``[autopilot]`` setting is out of range or of the wrong type; ``problems`` names each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("[autopilot] " + "; ".join(problems))
        self.problems = problems


@dataclass(frozen=True, kw_only=True, slots=True)
class AutopilotPolicy:
    enabled: bool = False
    shed_window_seconds: int = 5
    min_parity_percent: float = 99.9
    min_samples: int = 200
    cooldown_seconds: float = 60.0
    ttl_seconds: float = 3600.0
    interval_seconds: float = 1.0
    max_candidate_error_percent: float = 1.0

    def __post_init__(self) -> None:
        problems = _problems(self)
        if problems:
            raise AutopilotConfigError(problems)

    @property
    def shed_seconds_needed(self) -> int:
        """Seconds with shedding, of the last ``shed_window_seconds + 1``, that count as a spike."""
        return math.ceil(SHED_FRACTION * self.shed_window_seconds)

    @property
    def lease_seconds(self) -> float:
        return lease_seconds(self.interval_seconds)

    @classmethod
    def from_table(cls, raw: Mapping[str, Any]) -> AutopilotPolicy:
        """From the route table's ``[autopilot]``: unknown keys, wrong types and values out of range
        are refused, every problem named at once."""
        values, unknown, wrong = typed_values(cls, raw)
        problems = [f"unknown setting {name!r}" for name in unknown] + wrong
        try:
            policy = cls(**values)
        except AutopilotConfigError as exc:
            problems.extend(exc.problems)
        if problems:
            raise AutopilotConfigError(problems)
        return policy


def _problems(policy: AutopilotPolicy) -> list[str]:
    """What is out of range in ``policy``."""

    def finite(value: float) -> bool:
        return math.isfinite(value)

    problems = []
    window = policy.shed_window_seconds
    if not 1 <= window < WINDOW_SECONDS:
        problems.append(
            f"shed_window_seconds ({window}) must be 1 to {WINDOW_SECONDS - 1} seconds "
            f"(the live figures keep {WINDOW_SECONDS} s)"
        )
    parity = policy.min_parity_percent
    if not (finite(parity) and 0 < parity <= 100):
        problems.append(f"min_parity_percent ({parity:g}) must be more than 0 and at most 100")
    if policy.min_samples < 1:
        problems.append(f"min_samples ({policy.min_samples}) must be at least 1")
    cooldown = policy.cooldown_seconds
    if not (finite(cooldown) and cooldown > 0):
        problems.append(f"cooldown_seconds ({cooldown:g}) must be a positive number of seconds")
    ttl = policy.ttl_seconds
    if not (finite(ttl) and 0 < ttl <= MAX_TTL_SECONDS):
        problems.append(f"ttl_seconds ({ttl:g}) must be more than 0 and at most {MAX_TTL_SECONDS} (7 days)")
    interval = policy.interval_seconds
    if not (finite(interval) and 0.1 <= interval <= 60):
        problems.append(f"interval_seconds ({interval:g}) must be 0.1 to 60 seconds")
    errors = policy.max_candidate_error_percent
    if not (finite(errors) and 0 <= errors <= 100):
        problems.append(f"max_candidate_error_percent ({errors:g}) must be 0 to 100")
    return problems


@dataclass(frozen=True, kw_only=True, slots=True)
class LegacyFigures:
    """Legacy's shedding as the decider sees it: summed over every worker of this gateway."""

    shed: int  # requests shed in the last shed_window_seconds + 1 seconds
    shed_seconds: int  # how many of those seconds shed anything
    calm_seconds: float  # since legacy last shed (as far as this decider knows)
    rps: float = 0.0  # what legacy serves now (requests/s over the last minute, every worker)
    # What legacy served while it was shedding, the most seen (its capacity), if it shed since the
    # decider took over; None when unknown.
    capacity_rps: float | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class RouteFigures:
    """One route as the decider sees it: where it goes now and the evidence for its candidate."""

    route: str
    candidate: str
    auto_offload: bool
    backend: str  # legacy | candidate | split | targeting (flags.RouteState.backend)
    source: str  # override | unleash | file | default
    override: Override | None  # the stored override, in force or expired
    matches: int = 0
    mismatches: int = 0
    errors: int = 0  # shadow requests to the candidate that got no answer
    breaker: str = "closed"  # the candidate cluster's breaker in the deciding worker
    candidate_rps: float = 0.0  # what the candidate serves of this route now (requests/s, last minute)


@dataclass(frozen=True, kw_only=True, slots=True)
class Step:
    """One write: set (``override``) or release (None) one route, if it still holds ``expected``."""

    route: str
    override: Override | None
    expected: Override | None
    reason: str


@dataclass(frozen=True, kw_only=True, slots=True)
class Plan:
    shedding: bool
    calm: bool
    steps: tuple[Step, ...]
    verdicts: Mapping[str, str]  # route → what the decider thinks of it, in words


def _number(value: float) -> str:
    return f"{value:,.0f}"


def _percent(matches: int, compared: int) -> float:
    return 100.0 * matches / compared if compared else 0.0


def why_not(policy: AutopilotPolicy, figures: RouteFigures, now: float) -> str | None:
    """Why this route may not be moved now, or None when it may."""
    if not figures.auto_offload:
        return "not opted in (auto_offload = false)"
    override = figures.override
    if override is not None and override.active(now) and override.actor != ACTOR:
        return f"override by {override.actor} in force: never changed by the autopilot"
    if figures.backend != "legacy":
        return f"not on legacy ({figures.backend}, from {figures.source})"
    compared = figures.matches + figures.mismatches
    if compared < policy.min_samples:
        return (
            f"not enough parity evidence: {_number(compared)} of {_number(policy.min_samples)} "
            f"shadow comparisons in the last {PARITY_WINDOW_SECONDS} s"
        )
    parity = _percent(figures.matches, compared)
    if parity < policy.min_parity_percent:
        return f"parity {parity:.2f} % of {_number(compared)} is below {policy.min_parity_percent:g} %"
    if figures.breaker != "closed":
        return f"candidate {figures.candidate} breaker is {figures.breaker}"
    attempts = compared + figures.errors
    error_percent = _percent(figures.errors, attempts)
    if error_percent > policy.max_candidate_error_percent:
        return (
            f"candidate {figures.candidate} failed {error_percent:.2f} % of {_number(attempts)} shadow "
            f"requests (at most {policy.max_candidate_error_percent:g} %)"
        )
    return None


def decide(
    policy: AutopilotPolicy, legacy: LegacyFigures, routes: Sequence[RouteFigures], now: float
) -> Plan:
    """The steps the figures call for: moves while legacy sheds, releases once it has been calm for
    the cool-down, nothing in between (hysteresis). Pure: no I/O, no clock."""
    shedding = legacy.shed_seconds >= policy.shed_seconds_needed
    # Back only when calm for the cool-down AND the moved traffic fits in what legacy served while it
    # shed (with headroom): once the routes are gone legacy stops shedding, so the cool-down alone
    # would bring them back mid-spike, over and over (seen in the replay).
    moved_rps = sum(f.candidate_rps for f in routes if f.override is not None and f.override.actor == ACTOR)
    fits = legacy.capacity_rps is None or legacy.rps + moved_rps <= RETURN_HEADROOM * legacy.capacity_rps
    calm = not shedding and legacy.calm_seconds >= policy.cooldown_seconds and fits
    steps: list[Step] = []
    verdicts: dict[str, str] = {}
    back = (
        f"legacy has not shed for {legacy.calm_seconds:,.0f} s (cool-down {policy.cooldown_seconds:g} s): "
        "back to legacy"
    )
    for figures in routes:
        override = figures.override
        ours = override is not None and override.actor == ACTOR
        if ours and calm:  # in force or expired: every move of ours goes back together
            steps.append(Step(route=figures.route, override=None, expected=override, reason=back))
            verdicts[figures.route] = "moving back to legacy"
            continue
        if ours and override is not None and override.active(now):
            verdicts[figures.route] = (
                f"moved by the autopilot; back after {policy.cooldown_seconds:g} s without shedding "
                f"(calm for {legacy.calm_seconds:,.0f} s)"
                + ("" if fits else f" once its traffic fits: {_fit(legacy, moved_rps)}")
            )
            continue
        problem = why_not(policy, figures, now)
        if problem is not None:
            verdicts[figures.route] = problem
        elif not shedding:
            verdicts[figures.route] = "eligible: moves when legacy sheds"
        else:
            steps.append(_move(policy, legacy, figures, now))
            verdicts[figures.route] = "moving to candidate"
    return Plan(shedding=shedding, calm=calm, steps=tuple(steps), verdicts=verdicts)


def _fit(legacy: LegacyFigures, moved_rps: float) -> str:
    capacity = legacy.capacity_rps or 0.0
    return (
        f"legacy {legacy.rps:,.0f} + moved {moved_rps:,.0f} req/s > "
        f"{RETURN_HEADROOM:.0%} of the {capacity:,.0f} req/s it served while shedding"
    )


def _move(policy: AutopilotPolicy, legacy: LegacyFigures, figures: RouteFigures, now: float) -> Step:
    compared = figures.matches + figures.mismatches
    reason = (
        f"legacy shed {_number(legacy.shed)} req in {legacy.shed_seconds} of the last "
        f"{policy.shed_window_seconds + 1} s; parity {_percent(figures.matches, compared):.2f} % of "
        f"{_number(compared)} shadow samples"
    )
    move = Override.create(
        route=figures.route,
        backend="candidate",
        reason=reason,
        actor=ACTOR,
        ttl_seconds=policy.ttl_seconds,
        now=now,
    )
    return Step(route=figures.route, override=move, expected=figures.override, reason=reason)


def _read_live(
    live: LiveStats, policy: AutopilotPolicy, own: dict[str, Any]
) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, int]], dict[str, dict[str, dict[str, float]]]]:
    """Every worker's shedding, shadow results and traffic (file reads and JSON: run in a thread)."""
    return (
        live.clusters(policy.shed_window_seconds + 1, own=own),
        live.shadow_results(own=own),
        live.snapshot(own),
    )


async def gather(
    rt: Runtime, policy: AutopilotPolicy, now: float
) -> tuple[LegacyFigures, list[RouteFigures]]:
    """The figures ``decide`` needs, from this gateway's live files and this worker's state.

    The other workers' files are read in a thread (they are large under load: a few ms each to
    parse); this worker's state is read here, on the loop that changes it. ``calm_seconds`` comes
    from the live figures: since the newest second legacy shed in, or ``WINDOW_SECONDS`` (they keep a
    minute) when it shed in none; the decider adds its memory."""
    routing = rt.routing
    own = rt.live.own_figures()
    clusters, shadow, traffic = await asyncio.to_thread(_read_live, rt.live, policy, own)
    cluster = clusters.get(routing.table.default_cluster, {})
    last_shed = cluster.get("last_shed")
    calm_seconds = now - (last_shed + 1) if last_shed else float(WINDOW_SECONDS)
    legacy = LegacyFigures(
        shed=int(cluster.get("shed", 0)),
        shed_seconds=int(cluster.get("shed_seconds", 0)),
        calm_seconds=min(max(calm_seconds, 0.0), float(WINDOW_SECONDS)),
    )
    # What legacy *served*: its shed and failed requests (5xx, recorded under legacy too) are not
    # capacity, they are demand it could not carry.
    served = sum(
        figures["rps"] * (1 - figures["error_rate"])
        for backends in traffic.values()
        if (figures := backends.get("legacy"))
    )
    legacy = dataclasses.replace(legacy, rps=served)
    overrides = rt.flags.overrides.snapshot()
    routes = []
    for route in routing.table.routes:
        state = rt.flags.describe(route.id)
        results = shadow.get(route.id, {})
        upstream = routing.upstreams.get(route.candidate)
        routes.append(
            RouteFigures(
                route=route.id,
                candidate=route.candidate,
                auto_offload=route.auto_offload,
                backend=state.backend,
                source=state.source,
                override=overrides.get(route.id),
                matches=results.get("match", 0),
                mismatches=results.get("mismatch", 0),
                errors=results.get("error", 0),
                breaker=upstream.breaker.state if upstream is not None else "missing",
                candidate_rps=traffic.get(route.id, {}).get("candidate", {}).get("rps", 0.0),
            )
        )
    return legacy, routes


class Autopilot:
    """The loop of one worker: take or renew the lease, and when held, decide and write."""

    def __init__(
        self, runtime: Runtime, *, owner: str | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        self.rt = runtime
        self.lease = Lease(LEASE_NAME, owner)
        self.clock = clock
        self.capacity_rps: float | None = None  # legacy's served req/s while shedding, the most seen
        self.last_shed_at: float | None = None  # while leading: when legacy last shed, or took over
        self.last_plan: Plan | None = None
        self.last_error: str | None = None

    @property
    def owner(self) -> str:
        return self.lease.owner

    @property
    def leader(self) -> str | None:
        return self.lease.leader

    @property
    def leading(self) -> bool:
        return self.lease.leading

    async def run(self) -> None:
        def interval() -> float:
            policy = self.rt.table.autopilot
            return policy.interval_seconds if policy is not None else 1.0

        await run_every(self.tick, interval, self._failed)

    def _failed(self, exc: Exception) -> None:
        self.last_error = f"{type(exc).__name__}: {exc}"[:300]
        logger.error("autopilot tick failed", exc_info=exc)

    async def tick(self) -> Plan | None:
        """One round; returns the plan carried out (None when this worker does not decide)."""
        policy = self.rt.table.autopilot
        store = self.rt.flags.overrides
        if policy is None or not policy.enabled:
            await self.stop()
            return None
        if not await self.lease.hold(store, policy.lease_seconds):
            self.last_shed_at, self.capacity_rps = None, None
            if self.lease.problem is not None:
                self.last_error = self.lease.problem
            return None
        now = self.clock()
        if self.lease.took_over or self.last_shed_at is None:
            self.last_shed_at = now  # a new decider does not know what legacy did before: cool-down afresh
            self.capacity_rps = None  # nor what legacy could serve
        live, routes = await gather(self.rt, policy, now)
        if live.calm_seconds < WINDOW_SECONDS:  # the live figures saw legacy shed within the minute
            self.last_shed_at = max(self.last_shed_at, now - live.calm_seconds)
        if live.shed_seconds:  # shedding: what legacy serves now is what it can serve
            self.capacity_rps = max(self.capacity_rps or 0.0, live.rps)
        legacy = dataclasses.replace(
            live, calm_seconds=now - self.last_shed_at, capacity_rps=self.capacity_rps
        )
        plan = decide(policy, legacy, routes, now)
        self.last_plan, self.last_error = plan, None
        for step in plan.steps:
            # The lease was renewed at ``now``: stop writing well before it could pass to another
            # decider (store writes can take up to STORE_TIMEOUT_SECONDS each); the rest waits a tick.
            if self.clock() - now > policy.lease_seconds - STORE_TIMEOUT_SECONDS:
                break
            await self._carry_out(step)
        return plan

    async def _carry_out(self, step: Step) -> None:
        store = self.rt.flags.overrides
        change = [(step.route, step.override)]
        expected = {step.route: step.expected}
        try:
            await store_call(lambda: store.apply(change, actor=ACTOR, reason=step.reason, expected=expected))
        except OverrideConflict:
            logger.info("autopilot: %s changed meanwhile; left alone", step.route)
            return
        except (OverrideStoreError, TimeoutError) as exc:
            self.last_error = f"{step.route}: {exc}"[:300]
            logger.warning("autopilot: cannot change %s: %s", step.route, exc)
            return
        action = "moved to candidate" if step.override is not None else "moved back to legacy"
        logger.warning("autopilot: %s %s: %s", step.route, action, step.reason)

    async def stop(self) -> None:
        """Give the lease back (shutdown, or the autopilot turned off) so another worker takes over."""
        await self.lease.release(self.rt.flags.overrides)
        self.last_shed_at = None


async def status(rt: Runtime, autopilot: Autopilot | None, trail: Sequence[AuditEntry]) -> dict[str, Any]:
    """The admin API's view: policy, who decides, legacy's figures and each route's verdict now
    (computed by whichever worker answers), and the autopilot's last moves from the audit trail."""
    policy = rt.table.autopilot
    decisions = [entry.to_json() for entry in trail if entry.actor == ACTOR][-20:]
    if policy is None:
        return {"configured": False, "enabled": False, "decisions": decisions}
    now = time.time()
    legacy, routes = await gather(rt, policy, now)
    calm: float | None = legacy.calm_seconds if legacy.calm_seconds < WINDOW_SECONDS else None
    if autopilot is not None and autopilot.leading and autopilot.last_shed_at is not None:
        calm = now - autopilot.last_shed_at  # the decider's own memory reaches further back
        legacy = dataclasses.replace(legacy, calm_seconds=calm, capacity_rps=autopilot.capacity_rps)
    plan = decide(policy, legacy, routes, now)
    return {
        "configured": True,
        "enabled": policy.enabled,
        "policy": asdict(policy),
        "leader": autopilot.leader if autopilot is not None else None,
        "this_worker": autopilot.owner if autopilot is not None else None,
        "last_error": autopilot.last_error if autopilot is not None else None,
        "legacy": {
            "shed": legacy.shed,
            "shed_seconds": legacy.shed_seconds,
            "of_seconds": policy.shed_window_seconds + 1,
            "shedding": plan.shedding,
            # None: no shedding in the minute the live figures keep (and this worker does not decide).
            "calm_seconds": None if calm is None else round(calm, 1),
        },
        "routes": [
            {
                "route": figures.route,
                "auto_offload": figures.auto_offload,
                "backend": figures.backend,
                "parity_percent": round(_percent(figures.matches, figures.matches + figures.mismatches), 3),
                "compared": figures.matches + figures.mismatches,
                "errors": figures.errors,
                "verdict": plan.verdicts.get(figures.route, ""),
            }
            for figures in routes
        ],
        "decisions": decisions,
    }
