"""Parity-gated progressive rollouts (ADR 0016): the gates, judged per step, and the loop that runs them.

A rollout (``flags.rollout``: its state lives in the override store) moves one route to its candidate
in steps. Per step, over the step's window and relative to legacy on the same route and window:

* **parity**: at least ``min_parity`` % of at least ``min_samples`` shadow comparisons match. While a
  rollout runs its route shadows reads in both directions (the primary answer against the other
  backend's) at ``shadow_rate``: ``SAMPLES_FACTOR`` x ``min_samples`` per window at the route's
  traffic, all of it on a quiet route, within the shadow limits (``Shadow.max_in_flight``, the other
  side's breaker and adaptive limit);
* **errors**: the candidate's error rate (5xx, timeouts, requests it failed that legacy then answered,
  and shadows it did not answer or answered with a 5xx) at most legacy's x ``max_error_ratio`` +
  ``ERROR_FLOOR_PERCENT``, judged from ``min_samples`` candidate requests on;
* **latency**: the candidate's p99 at most legacy's x ``max_p99_ratio`` (+ ``LATENCY_FLOOR_MS``) in
  the same window, judged once both served ``max(min_samples, LATENCY_MIN_SAMPLES)`` requests in it
  (else "not judged": at 1 % the candidate rarely has enough, at 100 % legacy serves nothing; parity
  and errors carry those steps). The live histograms' buckets are 25 % apart: the gate fails only
  when the candidate's p99 is surely above (its bucket's lower bound).

A step advances once every gate passed for the whole window (the figures of ``every_seconds`` whole
seconds counted since the step began, with at least ``min_samples`` compared answers and candidate
requests); a window with too few samples goes on until it has them. A failed error or parity gate
rolls the route back to 0 % at once; a failed latency gate steps it down the way it came (one step
every ``min(every, DOWN_STEP_SECONDS)``), so legacy takes the traffic back gradually. When legacy
served too little in a window to compare error rates with (at 100 %), its figures from the last
window it did are used (``baseline``).

**Figures from every gateway process.** Each worker publishes its last minute of each rolling route
(``LiveStats.route_figures``: per second, what each backend served and the shadow results) to the
override store every ``ACTIVE_INTERVAL`` (``put_figures``); the decider sums every worker's document,
counting each whole second once (``counted_until``, stored with the rollout) once it is
``SETTLE_SECONDS`` old. The window's sums live in the rollout's document, so a restarted or new
decider carries on from them.

**One decider**: the lease ``rollout`` (gateway/decider.py, as auto-offload's). Every change is an
ordinary override (actor ``rollout``) written together with the rollout over the override the rollout
wrote last (``applied``): if a person changed the route meanwhile, the write is refused and the
rollout is paused instead, naming who did what. A person always wins.
"""

from __future__ import annotations

import bisect
import dataclasses
import functools
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from flags.model import AuditEntry, Override
from flags.overrides import OverrideConflict, OverrideStoreError
from flags.rollout import (
    ACTOR,
    DECIDING,
    DONE,
    PAUSED,
    QUEUED,
    ROLLED_BACK,
    ROLLING_BACK,
    RUNNING,
    Rollout,
    begin,
    event,
    person_override,
    revised,
    step_override,
)
from gateway.decider import STORE_TIMEOUT_SECONDS, Lease, lease_seconds, run_every, store_call
from gateway.live import (
    BOUNDS,
    CANDIDATE_FAILED,
    FIRST_DIFFERENCE,
    TO_CANDIDATE,
    WINDOW_SECONDS,
    quantile,
)

if TYPE_CHECKING:
    from gateway.runtime import Runtime

logger = logging.getLogger("gateway.rollout")
LEASE_NAME = "rollout"
ERROR_FLOOR_PERCENT = 0.1  # so 0 % against 0.01 % does not block a step
LATENCY_FLOOR_MS = 5.0  # so 2 ms against 1 ms does not either
LATENCY_MIN_SAMPLES = 500  # the p99 of fewer requests is one or two of them: noise, not a verdict
SAMPLES_FACTOR = 2.0  # shadow enough for twice min_samples per window
DOWN_STEP_SECONDS = 5.0
SETTLE_SECONDS = 2  # a second counts once every worker has published it (they do every half second)
ACTIVE_INTERVAL = 0.5
IDLE_INTERVAL = 1.0
_TOPIC_UNSAFE = re.compile(r"[^a-z0-9._-]")


def topic(route: str) -> str:
    """The override store's figures topic of a route's rollout."""
    return "rollout." + _TOPIC_UNSAFE.sub("-", route.lower())[:80]


# ---------------------------------------------------------------- evidence


@dataclass(slots=True)
class Side:
    """What one backend served of the route: requests, errors (5xx) and a latency histogram."""

    requests: int = 0
    errors: int = 0
    histogram: dict[int, int] = field(default_factory=dict)

    def add(self, requests: int, errors: int, histogram: Mapping[Any, int]) -> None:
        self.requests += requests
        self.errors += errors
        for index, count in histogram.items():
            self.histogram[int(index)] = self.histogram.get(int(index), 0) + count

    def error_percent(self) -> float | None:
        return 100.0 * self.errors / self.requests if self.requests else None

    def p99_ms(self) -> tuple[float, float] | None:
        """The p99's histogram bucket as (lower, upper) bounds in ms; None without requests."""
        if not self.requests:
            return None
        upper = quantile(self.histogram, self.requests, 0.99)
        index = bisect.bisect_left(BOUNDS, upper)
        return (BOUNDS[index - 1] * 1000 if index else 0.0), upper * 1000

    def to_json(self) -> dict[str, Any]:
        return {"requests": self.requests, "errors": self.errors, "histogram": dict(self.histogram)}

    @classmethod
    def from_json(cls, data: object) -> Side:
        side = cls()
        if isinstance(data, dict):
            try:
                side.add(int(data["requests"]), int(data["errors"]), dict(data.get("histogram") or {}))
            except (KeyError, TypeError, ValueError):
                return cls()  # hand-edited: an empty window is the safe reading
        return side


@dataclass(slots=True)
class Evidence:
    """A window's figures for one route, every worker summed."""

    legacy: Side = field(default_factory=Side)
    candidate: Side = field(default_factory=Side)
    match: int = 0
    mismatch: int = 0
    to_candidate: int = 0  # shadows sent to the candidate
    candidate_failed: int = 0  # of those, no answer or a 5xx
    first_difference: str | None = None
    first_difference_at: int | None = None
    seconds: int = 0  # whole seconds counted
    workers: set[str] = field(default_factory=set)

    @property
    def compared(self) -> int:
        return self.match + self.mismatch

    def merge(self, other: Evidence) -> None:
        self.legacy.add(other.legacy.requests, other.legacy.errors, other.legacy.histogram)
        self.candidate.add(other.candidate.requests, other.candidate.errors, other.candidate.histogram)
        self.match += other.match
        self.mismatch += other.mismatch
        self.to_candidate += other.to_candidate
        self.candidate_failed += other.candidate_failed
        if other.first_difference_at is not None and (
            self.first_difference_at is None or other.first_difference_at < self.first_difference_at
        ):
            self.first_difference, self.first_difference_at = (
                other.first_difference,
                other.first_difference_at,
            )
        self.seconds += other.seconds
        self.workers |= other.workers

    def to_json(self) -> dict[str, Any]:
        return {
            "legacy": self.legacy.to_json(),
            "candidate": self.candidate.to_json(),
            "match": self.match,
            "mismatch": self.mismatch,
            "to_candidate": self.to_candidate,
            "candidate_failed": self.candidate_failed,
            "first_difference": self.first_difference,
            "first_difference_at": self.first_difference_at,
            "seconds": self.seconds,
            "workers": sorted(self.workers)[:64],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Evidence:
        try:
            where, at = data.get("first_difference"), data.get("first_difference_at")
            return cls(
                legacy=Side.from_json(data.get("legacy")),
                candidate=Side.from_json(data.get("candidate")),
                match=int(data.get("match", 0)),
                mismatch=int(data.get("mismatch", 0)),
                to_candidate=int(data.get("to_candidate", 0)),
                candidate_failed=int(data.get("candidate_failed", 0)),
                first_difference=where if isinstance(where, str) else None,
                first_difference_at=at if isinstance(at, int) else None,
                seconds=int(data.get("seconds", 0)),
                workers={str(worker) for worker in data.get("workers") or []},
            )
        except (TypeError, ValueError):
            return cls()


def collect(documents: Mapping[str, Any], after: int, until: int) -> tuple[Evidence, float]:
    """The seconds in (``after``, ``until``] of every worker's document (``LiveStats.route_figures``)
    summed, and the route's requests per second over all the seconds up to ``until`` they hold.

    Only seconds some document covers count as window time (``seconds``): each holds the last
    ``WINDOW_SECONDS`` from the second its worker started (``from``), so after a store outage or a
    redeploy the gap is lost, never credited as seconds that passed every gate."""
    delta = Evidence()
    traffic, first, covered_from = 0, until, until + 1
    for worker, document in documents.items():
        part, part_traffic, part_first = Evidence(), 0, until
        try:
            part_from = int(document["from"])
            for backend, side in (("legacy", part.legacy), ("candidate", part.candidate)):
                for second, requests, errors, histogram in document.get(backend) or []:
                    if second <= until:
                        part_traffic += requests
                        part_first = min(part_first, second)
                    if after < second <= until:
                        side.add(requests, errors, histogram)
                        part.workers.add(worker)
            for row in document.get("shadow") or []:
                second = row[0]
                if not after < second <= until:
                    continue
                part.match += row[1]
                part.mismatch += row[2]
                part.to_candidate += row[TO_CANDIDATE]
                part.candidate_failed += row[CANDIDATE_FAILED]
                if len(row) > FIRST_DIFFERENCE and (
                    part.first_difference_at is None or second < part.first_difference_at
                ):
                    part.first_difference, part.first_difference_at = str(row[FIRST_DIFFERENCE]), second
                part.workers.add(worker)
        except (TypeError, ValueError, IndexError, KeyError, AttributeError):
            continue  # not a figures document of ours (hand-made): this one is skipped, never fatal
        delta.merge(part)
        covered_from = min(covered_from, part_from)
        traffic += part_traffic
        first = min(first, part_first)
    start = max(after, covered_from - 1, until - WINDOW_SECONDS)
    delta.seconds = max(0, until - start)
    return delta, traffic / max(1, until - first + 1)


def shadow_rate(rollout: Rollout, rps: float) -> float:
    """The share of reads to shadow so a window gets about ``SAMPLES_FACTOR`` x ``min_samples``."""
    expected = rps * rollout.plan.every_seconds
    if expected <= 0:
        return 1.0
    return round(min(1.0, SAMPLES_FACTOR * rollout.plan.min_samples / expected), 4)


# ---------------------------------------------------------------- the gates (pure)


@dataclass(frozen=True, kw_only=True, slots=True)
class Verdict:
    action: str  # wait | advance | rollback | step_down
    reason: str
    gates: dict[str, Any]


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f} %"


def _step(rollout: Rollout) -> str:
    return f"step {rollout.step}/{len(rollout.plan.steps)} ({rollout.percent} %)"


def judge(rollout: Rollout, evidence: Evidence, now: float) -> Verdict:
    """What the window's figures call for. Pure: no I/O, no clock."""
    plan = rollout.plan
    elapsed = max(0.0, now - rollout.step_started_at)
    compared = evidence.compared
    parity = 100.0 * evidence.match / compared if compared else None
    candidate = evidence.candidate
    attempts = candidate.requests + evidence.to_candidate
    failures = candidate.errors + evidence.candidate_failed
    candidate_errors = 100.0 * failures / attempts if attempts else None
    legacy, source = evidence.legacy, "window"
    if legacy.requests < plan.min_samples and rollout.baseline is not None:
        legacy, source = Side.from_json(rollout.baseline), "baseline"
    legacy_errors = legacy.error_percent()
    if legacy.requests < plan.min_samples:  # a handful of legacy requests is no error rate: floor only
        source = "too few: floor only"
    trusted = legacy_errors if legacy.requests >= plan.min_samples else None
    allowed_errors = (trusted or 0.0) * plan.max_error_ratio + ERROR_FLOOR_PERCENT
    # Latency only against legacy in the same window (never the baseline: a p99 from another minute
    # compares the machine's moods, not the backends), and only on enough requests to have a p99.
    candidate_p99, legacy_p99 = candidate.p99_ms(), evidence.legacy.p99_ms()
    allowed_p99 = legacy_p99[1] * plan.max_p99_ratio + LATENCY_FLOOR_MS if legacy_p99 else None
    latency_samples = max(plan.min_samples, LATENCY_MIN_SAMPLES)

    errors = "waiting" if attempts < plan.min_samples else "pass"
    if candidate_errors is not None and errors == "pass" and candidate_errors > allowed_errors:
        errors = "fail"
    parity_gate = "waiting" if compared < plan.min_samples else "pass"
    if parity is not None and parity_gate == "pass" and parity < plan.min_parity:
        parity_gate = "fail"
    latency = "not judged"
    if candidate.requests >= latency_samples and evidence.legacy.requests >= latency_samples:
        assert candidate_p99 is not None and allowed_p99 is not None
        latency = "fail" if candidate_p99[0] > allowed_p99 else "pass"
    gates = {
        "window_seconds": evidence.seconds,  # whole seconds counted since the step began
        "elapsed_seconds": round(elapsed, 1),
        "every_seconds": plan.every_seconds,
        "workers": len(evidence.workers),
        "min_samples": plan.min_samples,
        "compared": compared,
        "mismatches": evidence.mismatch,
        "parity_percent": None if parity is None else round(parity, 3),
        "min_parity": plan.min_parity,
        "first_difference": evidence.first_difference,
        "candidate": {
            "requests": candidate.requests,
            "shadowed": evidence.to_candidate,
            "errors": failures,
            "error_rate_percent": None if candidate_errors is None else round(candidate_errors, 3),
            "p99_ms": None if candidate_p99 is None else round(candidate_p99[1], 2),
        },
        "legacy": {
            "requests": legacy.requests,
            "errors": legacy.errors,
            "error_rate_percent": None if legacy_errors is None else round(legacy_errors, 3),
            "p99_ms": None if legacy_p99 is None else round(legacy_p99[1], 2),  # this window's
            "from": source,
        },
        "latency_samples": latency_samples,
        "allowed_error_rate_percent": round(allowed_errors, 3),
        "allowed_p99_ms": None if allowed_p99 is None else round(allowed_p99, 2),
        "gates": {"errors": errors, "parity": parity_gate, "latency": latency},
    }
    if errors == "fail":
        reason = (
            f"errors: candidate failed {_pct(candidate_errors)} of {attempts:,} requests, allowed "
            f"{allowed_errors:.2f} % (legacy {_pct(legacy_errors)} × {plan.max_error_ratio:g} + "
            f"{ERROR_FLOOR_PERCENT:g})"
        )
        return Verdict(action="rollback", reason=reason, gates=gates)
    if parity_gate == "fail":
        reason = (
            f"parity {_pct(parity)} of {compared:,} compared is below {plan.min_parity:g} %; "
            f"first differing field {evidence.first_difference or '(unknown)'}"
        )
        return Verdict(action="rollback", reason=reason, gates=gates)
    if latency == "fail":
        assert candidate_p99 is not None and legacy_p99 is not None
        reason = (
            f"latency: candidate p99 {candidate_p99[0]:.1f}–{candidate_p99[1]:.1f} ms > legacy's "
            f"{legacy_p99[1]:.1f} ms × {plan.max_p99_ratio:g} + {LATENCY_FLOOR_MS:g}"
        )
        return Verdict(action="step_down", reason=reason, gates=gates)
    passed = (
        f"parity {_pct(parity)} of {compared:,}; errors {_pct(candidate_errors)} vs legacy "
        f"{_pct(legacy_errors)}; p99 "
        + (
            f"{candidate_p99[1]:.0f} vs {legacy_p99[1]:.0f} ms"
            if latency == "pass" and candidate_p99 and legacy_p99
            else "not judged"
        )
    )
    missing = []
    if evidence.seconds < plan.every_seconds:  # counted whole seconds: the window's figures, not the clock
        missing.append(f"{evidence.seconds} of {plan.every_seconds:g} s")
    if compared < plan.min_samples:
        missing.append(f"{compared:,} of {plan.min_samples:,} compared")
    if attempts < plan.min_samples:
        missing.append(f"{attempts:,} of {plan.min_samples:,} candidate requests")
    if missing:
        return Verdict(action="wait", reason=f"waiting for the window: {', '.join(missing)}", gates=gates)
    return Verdict(action="advance", reason=f"passed {evidence.seconds} s: {passed}", gates=gates)


def decide(rollout: Rollout, evidence: Evidence, now: float) -> tuple[Rollout, Override | None]:
    """The rollout after this judgement, and the override to write with it (None: no change)."""
    verdict = judge(rollout, evidence, now)
    steps = rollout.plan.steps
    current = dataclasses.replace(rollout, gates=verdict.gates, updated_at=now)
    if verdict.action == "rollback":
        why = f"rolled back to 0 % at {_step(rollout)}: {verdict.reason}"
        return _move(current, ROLLED_BACK, 0, why, now, "rollback", verdict)
    if rollout.state == ROLLING_BACK:
        if now - rollout.step_started_at < min(rollout.plan.every_seconds, DOWN_STEP_SECONDS):
            return dataclasses.replace(current, reason=rollout.reason), None
        return _down(current, rollout.reason.partition(": ")[2] or verdict.reason, now, verdict)
    if verdict.action == "step_down":
        return _down(current, verdict.reason, now, verdict)
    if verdict.action == "wait":
        return dataclasses.replace(current, reason=f"{_step(rollout)}: {verdict.reason}"), None
    baseline = evidence.legacy.to_json() if evidence.legacy.requests >= rollout.plan.min_samples else None
    current = dataclasses.replace(current, baseline=baseline or rollout.baseline)
    if rollout.final_step:
        why = f"done at {rollout.percent} %: {verdict.reason}"
        done = dataclasses.replace(current, state=DONE, reason=why[:500], shadow_rate=0.0)
        return event(done, "done", at=now, by=ACTOR, reason=done.reason, gates=verdict.gates), None
    percent = steps[rollout.step]
    why = f"step {rollout.step + 1}/{len(steps)}: {percent} % to the candidate; {verdict.reason}"
    return _move(current, RUNNING, percent, why, now, "advance", verdict, step=rollout.step + 1)


def _down(rollout: Rollout, cause: str, now: float, verdict: Verdict) -> tuple[Rollout, Override | None]:
    """One step down the way it came (latency), to 0 % after the first."""
    step = rollout.step - 1
    percent = rollout.plan.steps[step - 1] if step >= 1 else 0
    if percent == 0:
        why = f"rolled back to 0 % step by step: {cause}"
        return _move(rollout, ROLLED_BACK, 0, why, now, "rollback", verdict, step=max(step, 0))
    why = f"stepping back to {percent} %: {cause}"
    return _move(rollout, ROLLING_BACK, percent, why, now, "step_down", verdict, step=step)


def _move(
    rollout: Rollout,
    state: str,
    percent: int,
    why: str,
    now: float,
    action: str,
    verdict: Verdict,
    *,
    step: int | None = None,
) -> tuple[Rollout, Override]:
    """A new percent: its override, a fresh window, and the figures that justified it in the history."""
    why = why[:500]
    override = step_override(rollout.route, percent, why, now)
    moved = dataclasses.replace(
        rollout,
        state=state,
        percent=percent,
        step=rollout.step if step is None else step,
        reason=why,
        applied=override,
        step_started_at=now,
        counted_until=max(rollout.counted_until, int(now)),
        window={},
        shadow_rate=0.0 if state == ROLLED_BACK else rollout.shadow_rate,
    )
    return event(moved, action, at=now, by=ACTOR, reason=why, gates=verdict.gates), override


def person_acted(rollout: Rollout, what: str, by: str, now: float) -> Rollout:
    """Paused: the route's override is not the one the rollout wrote (``what`` says whose it is)."""
    why = (f"paused at {rollout.percent} %: {what}; a person's change wins (resume to carry on)")[:500]
    paused = revised(rollout, now, state=PAUSED, reason=why)
    return event(paused, "pause", at=now, by=by, reason=why)


def what_changed(current: Override | None, entry: AuditEntry | None) -> tuple[str, str]:
    """Who holds the route instead of the rollout, in words, and who that is: the audit entry that
    wrote ``current`` when there is one, else the override itself (changed with no audit line: a
    hand edit, a raw Redis write, or a write cut short)."""
    if entry is not None and entry.after is None:
        return f"{entry.actor} released the override ({entry.reason})", entry.actor
    if entry is not None:
        return person_override(Override.from_json(entry.after)), entry.actor
    if current is None:
        return "the override was removed, with no audit entry", "?"
    return f"{person_override(current)}, with no audit entry", current.actor


# ---------------------------------------------------------------- the loop


class Rollouts:
    """Every worker's loop: publish its figures of the rolling routes, shadow them, and when holding
    the lease, judge every rollout and write what the gates call for."""

    def __init__(
        self, runtime: Runtime, *, owner: str | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        self.rt = runtime
        self.lease = Lease(LEASE_NAME, owner)
        self.clock = clock
        self.active = False  # some rollout is not over: tick faster, hold the lease
        self.last_error: str | None = None

    @property
    def owner(self) -> str:
        return self.lease.owner

    async def run(self) -> None:
        await run_every(self.tick, lambda: ACTIVE_INTERVAL if self.active else IDLE_INTERVAL, self._failed)

    def _failed(self, exc: Exception) -> None:
        self.last_error = f"{type(exc).__name__}: {exc}"[:300]
        logger.error("rollout tick failed", exc_info=exc)

    async def tick(self) -> list[Rollout] | None:
        """One round; returns the rollouts as written (None when this worker does not decide). A store
        that fails or does not answer ends the round quietly (``last_error``): the next one tries again,
        and the rollout's state, in the store, is where it was."""
        try:
            return await self._round()
        except (OverrideStoreError, TimeoutError) as exc:
            if self.lease.leading and self.last_error is None:
                logger.warning("rollout: the override store failed; no step until it answers: %s", exc)
            self.last_error = f"override store: {exc}"[:300]
            return None

    async def _round(self) -> list[Rollout] | None:
        store = self.rt.flags.overrides
        rollouts = await store_call(store.rollouts)
        deciding = {route: r for route, r in rollouts.items() if r.state in DECIDING}
        self.rt.shadow_boost = {route: r.shadow_rate for route, r in deciding.items()}
        self.active = any(rollout.active for rollout in rollouts.values())
        if not self.active:
            await self.lease.release(store)
            return None
        for route in deciding:  # every worker's figures, whoever decides
            document = self.rt.live.route_figures(route)
            await store_call(functools.partial(store.put_figures, topic(route), self.owner, document))
        if not await self.lease.hold(store, lease_seconds(ACTIVE_INTERVAL)):
            if self.lease.problem is not None:
                self.last_error = self.lease.problem
            return None
        now = self.clock()
        self.last_error = None
        written: list[Rollout | None] = []
        for rollout in rollouts.values():
            # Stop writing well before the lease could pass to another decider; the rest waits a tick.
            if self.clock() - now > lease_seconds(ACTIVE_INTERVAL) - STORE_TIMEOUT_SECONDS:
                break
            if rollout.state in DECIDING:
                documents = await store_call(functools.partial(store.figures, topic(rollout.route)))
                written.append(await self._judge(rollout, documents, now))
        written += await self._next_in_batches(rollouts, now)
        return [rollout for rollout in written if rollout is not None]

    async def _judge(self, rollout: Rollout, documents: Mapping[str, Any], now: float) -> Rollout | None:
        until = int(now) - SETTLE_SECONDS
        delta, rps = collect(documents, rollout.counted_until, until)
        evidence = Evidence.from_json(rollout.window)
        evidence.merge(delta)
        counted = dataclasses.replace(
            rollout,
            window=evidence.to_json(),
            counted_until=max(until, rollout.counted_until),
            shadow_rate=shadow_rate(rollout, rps) if rps or rollout.shadow_rate == 0 else rollout.shadow_rate,
        )
        changed, override = decide(counted, evidence, now)
        unchanged = self.rt.flags.overrides.snapshot().get(rollout.route) == rollout.applied
        if (
            override is None
            and until <= rollout.counted_until
            and changed.state == rollout.state
            and unchanged
        ):
            return None  # nothing new counted, nothing to write, nobody touched the route (as far as seen)
        return await self._write(rollout, revised(changed, now), override)

    async def _write(self, seen: Rollout, rollout: Rollout, override: Override | None) -> Rollout | None:
        """Write ``rollout`` (and ``override``) if the route still holds the override ``seen`` wrote;
        if a person changed it, pause instead."""
        store = self.rt.flags.overrides
        changes = [] if override is None else [(rollout.route, override)]
        expected = {rollout.route: seen.applied}
        try:
            await store_call(
                lambda: store.apply(
                    changes, actor=ACTOR, reason=rollout.reason, expected=expected, rollout=rollout
                )
            )
        except OverrideConflict:
            return await self._conflict(seen, rollout.updated_at)
        except (OverrideStoreError, TimeoutError) as exc:
            self.last_error = f"{rollout.route}: {exc}"[:300]
            logger.warning("rollout: cannot write %s: %s", rollout.route, exc)
            return None
        if override is not None:
            logger.warning("rollout: %s: %s", rollout.route, rollout.reason)
        return rollout

    async def _conflict(self, seen: Rollout, now: float) -> Rollout | None:
        """The write was refused: the rollout changed (a person paused or aborted it: next tick), or
        the route's override is not the one the rollout applied (a person acted, or the store was
        changed by hand): pause, saying who did what. Never a silent retry: a rollout whose override
        differs would conflict on every tick, judged never again."""
        store = self.rt.flags.overrides
        fresh = (await store_call(store.rollouts)).get(seen.route)
        if fresh is None or fresh.version != seen.version:
            return None
        current = (await store_call(store.stored)).get(seen.route)
        if current == seen.applied:
            return None  # both as the rollout left them: the write raced with another; next tick
        trail = await store_call(lambda: store.audit(limit=100))
        after = None if current is None else current.to_json()
        entry = next((e for e in reversed(trail) if e.route == seen.route and e.after == after), None)
        what, by = what_changed(current, entry)
        paused = person_acted(seen, what, by, now)
        try:
            await store_call(lambda: store.apply([], actor=ACTOR, reason=paused.reason, rollout=paused))
        except OverrideConflict:
            return None
        logger.warning("rollout: %s: %s", seen.route, paused.reason)
        return paused

    async def _next_in_batches(self, rollouts: Mapping[str, Rollout], now: float) -> list[Rollout | None]:
        """``--all``: when no rollout of a batch is under way, the next queued one starts."""
        written: list[Rollout | None] = []
        batches: dict[str, list[Rollout]] = {}
        for rollout in rollouts.values():
            if rollout.batch is not None:
                batches.setdefault(rollout.batch, []).append(rollout)
        for members in batches.values():
            if any(r.state in (RUNNING, PAUSED, ROLLING_BACK) for r in members):
                continue
            queued = sorted((r for r in members if r.state == QUEUED), key=lambda r: r.position)
            if not queued:
                continue
            nxt = queued[0]
            # From the store, not the snapshot: the write is checked against it.
            current = (await store_call(self.rt.flags.overrides.stored)).get(nxt.route)
            seen = dataclasses.replace(nxt, applied=current)
            if current is not None and current.actor != ACTOR and current.active(now):
                paused = person_acted(nxt, person_override(current), current.actor, now)
                written.append(await self._write(seen, paused, None))
                continue
            started, override = begin(revised(nxt, now), now)
            written.append(await self._write(seen, started, override))
        return written


def status(rollouts: Mapping[str, Rollout], decider: Rollouts | None, order: list[str]) -> dict[str, Any]:
    """The admin API's view: every rollout (the table's order) and who decides."""
    position = {route: n for n, route in enumerate(order)}
    ranked = sorted(rollouts.values(), key=lambda r: (position.get(r.route, len(position)), r.route))
    return {
        "rollouts": [rollout.to_json() for rollout in ranked],
        "decider": {
            "leader": decider.lease.leader if decider is not None else None,
            "this_worker": decider.owner if decider is not None else None,
            "last_error": decider.last_error if decider is not None else None,
        },
        "gates": {
            "error_floor_percent": ERROR_FLOOR_PERCENT,
            "latency_floor_ms": LATENCY_FLOOR_MS,
            "latency_min_samples": LATENCY_MIN_SAMPLES,
            "down_step_seconds": DOWN_STEP_SECONDS,
        },
    }
