"""An adaptive concurrency limit per cluster: protect a backend that saturates (ADR 0013).

The limit follows measured latency with AIMD (additive increase, multiplicative decrease), as
TCP's congestion window does and Netflix's concurrency-limits ``AIMDLimit`` does:

* every admitted request's time to the response headers is a sample; samples are summarised
  per window (``window_seconds``, at least ``min_samples``) as their mean;
* the **baseline** is the lowest window mean seen, drifting up by ``baseline_drift`` per window
  that does not press on the limit, so that it follows a backend whose unloaded latency really
  changed but not the latency of a long overload;
* a window whose mean is above ``tolerance`` times the baseline while at least half the limit was
  in flight at some point (or that saw a timeout, 502, 503 or 504) shrinks the limit by ``backoff`` (at low
  concurrency a slower window is the mix of endpoints, not a queue); any other window at which the
  limit was reached grows it by one;
* the limit stays within ``[min_limit, max_limit]``.

Beyond the limit a request waits in a FIFO queue of at most ``max_queue`` requests for at most
``max_wait_seconds``, then is shed (``Overloaded``: 503 with ``Retry-After``); a full queue sheds
at once. Admitted requests therefore see the backend near its unloaded latency, and the excess
gets a fast, explicit answer instead of a timeout.

Cost on the request path: ``try_acquire`` is a comparison and an increment; ``release`` adds
the sample and, once per window, recomputes the limit. Only queued requests create a future.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import math
import time
from dataclasses import dataclass
from typing import Any

from gateway.table_fields import typed_values


class LimitConfigError(ValueError):
    """A limiter setting is out of range; the message names it."""


@dataclass(frozen=True, kw_only=True, slots=True)
class LimitPolicy:
    initial_limit: int = 20
    min_limit: int = 2
    max_limit: int = 200
    tolerance: float = 2.0
    backoff: float = 0.9
    window_seconds: float = 0.1
    min_samples: int = 5
    baseline_drift: float = 0.01
    max_queue: int = 50
    max_wait_seconds: float = 0.05

    def __post_init__(self) -> None:
        problems = []
        if not 1 <= self.min_limit <= self.max_limit:
            problems.append(f"min_limit ({self.min_limit}) must be ≥ 1 and ≤ max_limit ({self.max_limit})")
        if not self.min_limit <= self.initial_limit <= self.max_limit:
            problems.append(f"initial_limit ({self.initial_limit}) must be within min_limit..max_limit")
        if not (math.isfinite(self.tolerance) and self.tolerance > 1.0):
            problems.append(f"tolerance ({self.tolerance}) must be a finite number above 1")
        if not 0.0 < self.backoff < 1.0:
            problems.append(f"backoff ({self.backoff}) must be between 0 and 1")
        if not (math.isfinite(self.window_seconds) and self.window_seconds > 0):
            problems.append(f"window_seconds ({self.window_seconds}) must be a positive number")
        if self.min_samples < 1:
            problems.append(f"min_samples ({self.min_samples}) must be ≥ 1")
        if not (math.isfinite(self.baseline_drift) and 0 <= self.baseline_drift < 1):
            problems.append(f"baseline_drift ({self.baseline_drift}) must be in [0, 1)")
        if self.max_queue < 0:
            problems.append(f"max_queue ({self.max_queue}) must be ≥ 0")
        if not (math.isfinite(self.max_wait_seconds) and self.max_wait_seconds >= 0):
            problems.append(f"max_wait_seconds ({self.max_wait_seconds}) must be ≥ 0")
        if problems:
            raise LimitConfigError("; ".join(problems))

    @classmethod
    def from_table(cls, raw: dict[str, Any], where: str) -> LimitPolicy:
        """From a route table's ``limiter = {…}``; unknown keys and wrong types are refused."""
        values, unknown, wrong = typed_values(cls, raw, skip=frozenset({"enabled"}))
        if unknown:
            raise LimitConfigError(f"{where}: unknown limiter setting(s) {', '.join(unknown)}")
        if wrong:
            raise LimitConfigError(f"{where}: limiter.{wrong[0]}")
        try:
            return cls(**values)
        except LimitConfigError as exc:
            raise LimitConfigError(f"{where}: {exc}") from None


class AdaptiveLimit:
    def __init__(self, policy: LimitPolicy, clock: Any = time.monotonic) -> None:
        self.policy = policy
        self.limit = float(policy.initial_limit)
        self.in_flight = 0
        self.shed = 0
        self.baseline: float | None = None
        self._clock = clock
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._window_start = clock()
        self._sum = 0.0
        self._count = 0
        self._dropped = False  # a timeout or a 5xx in this window
        self._reached = False  # the limit was reached in this window (room to grow is useful)
        self._peak = 0  # the most requests in flight at once in this window

    @property
    def queued(self) -> int:
        return len(self._waiters)

    def try_acquire(self) -> bool:
        if self.in_flight < int(self.limit) and not self._waiters:
            self.in_flight += 1
            if self.in_flight > self._peak:
                self._peak = self.in_flight
            return True
        self._reached = True
        return False

    async def acquire(self) -> bool:
        """Wait in the queue for a slot; False (shed) when the queue is full or the wait too long."""
        if self.try_acquire():
            return True
        if len(self._waiters) >= self.policy.max_queue or self.policy.max_wait_seconds == 0:
            self.shed += 1
            return False
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that races
            # the hand-over of a slot; here a cancellation always reaches the except below.
            async with asyncio.timeout(self.policy.max_wait_seconds):
                await asyncio.shield(waiter)
        except TimeoutError:
            if waiter.done() and not waiter.cancelled():
                return True  # handed a slot at the last moment: keep it
            waiter.cancel()
            self._discard(waiter)
            self.shed += 1
            return False
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self.release(None)  # we were handed a slot but leave: pass it on
            else:
                waiter.cancel()
                self._discard(waiter)
            raise
        return True

    def _discard(self, waiter: asyncio.Future[None]) -> None:
        with contextlib.suppress(ValueError):  # already handed over
            self._waiters.remove(waiter)

    def release(self, seconds: float | None, *, dropped: bool = False) -> None:
        """A request admitted by ``acquire`` ended after ``seconds`` to its response headers
        (None: no sample, e.g. it was cancelled); ``dropped``: it timed out or got a 502/503/504."""
        if seconds is not None:
            self._sum += seconds
            self._count += 1
        self._dropped = self._dropped or dropped
        now = self._clock()
        if now - self._window_start >= self.policy.window_seconds and (
            self._count >= self.policy.min_samples or self._dropped
        ):
            self._adjust()
            self._window_start = now
        self.in_flight -= 1
        # Admit the oldest waiters while the (possibly grown) limit has room: every free slot, not
        # just this one, or the queue would hold the in-flight count down as the limit grows.
        while self._waiters and self.in_flight < int(self.limit):
            waiter = self._waiters.popleft()
            if not waiter.done():
                self.in_flight += 1  # the waiter's slot, taken on its behalf
                if self.in_flight > self._peak:
                    self._peak = self.in_flight
                waiter.set_result(None)

    def _adjust(self) -> None:
        policy = self.policy
        mean = self._sum / self._count if self._count else None
        # Slow answers count as congestion only while we press on the limit (half of it in flight
        # at some point): at low concurrency a slower window is the mix of endpoints, not a queue.
        pressed = self._peak * 2 >= self.limit
        if mean is not None:
            # The baseline drifts up only in windows that do not press on the limit: under a long
            # overload a drift would otherwise raise it to the overloaded latency (10 %/s at spike
            # rates) and the limit would stop protecting anything.
            drift = 0.0 if pressed else policy.baseline_drift
            drifted = self.baseline * (1 + drift) if self.baseline is not None else mean
            self.baseline = min(drifted, mean)
        congested = self._dropped or (
            pressed
            and mean is not None
            and self.baseline is not None
            and mean > policy.tolerance * self.baseline
        )
        if congested:
            self.limit = max(float(policy.min_limit), self.limit * policy.backoff)
        elif self._reached:
            self.limit = min(float(policy.max_limit), self.limit + 1)
        self._sum, self._count = 0.0, 0
        self._dropped = self._reached = False
        self._peak = self.in_flight
