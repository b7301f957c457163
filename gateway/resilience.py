"""Per-cluster protection: a circuit breaker, a bulkhead and the retry budget.

Breaker (ADR 0008): closed → open when, over the last ``window_seconds``, at least
``min_calls`` calls were made and more than ``failure_rate`` of them failed (a few bad
requests from one client can never open it: they are not the volume), or after
``connect_failures`` consecutive failures to connect (refused or reset before a byte was
sent: a client cannot cause those); open → half-open after ``open_seconds``: one probe is
let through; its success closes the breaker, its failure opens it again. A probe that
ends without a verdict (cancelled) is ``abandon``-ed so the next
request can probe. While a candidate's breaker is open the proxy routes its requests to
legacy as a routing decision, not as a retry.

Bulkhead: at most ``max_in_flight`` requests at once; one more is refused at once
(503 + Retry-After), never queued.

Retry budget: every request earns ``ratio`` of a token (at most ``burst`` saved); a
retry or fallback after a failure spends one, so they stay under ``ratio`` of the
traffic even when a backend fails for everyone (no retry storm on top of an outage).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
STATE_VALUES = {CLOSED: 0, HALF_OPEN: 1, OPEN: 2}


@dataclass(frozen=True, kw_only=True, slots=True)
class BreakerPolicy:
    failure_rate: float = 0.5
    min_calls: int = 20
    window_seconds: int = 10
    connect_failures: int = 5
    open_seconds: float = 5.0


class CircuitBreaker:
    """One cluster's breaker; ``on_change(state)`` is called on every state change (metrics)."""

    def __init__(
        self, policy: BreakerPolicy | None = None, on_change: Callable[[str], None] | None = None
    ) -> None:
        self.policy = policy or BreakerPolicy()
        self.state = CLOSED
        self._on_change = on_change
        # One [calls, failures] pair per second of the window, indexed by second % window.
        self._buckets = [[0, 0] for _ in range(self.policy.window_seconds)]
        self._bucket_second = [0] * self.policy.window_seconds
        self._consecutive_connect = 0
        self._opened_at = 0.0
        self._probe_in_flight = False

    def allow(self) -> bool:
        """May a request go to this cluster now? (In half-open, only the single probe.)"""
        if self.state == CLOSED:
            return True
        if self.state == OPEN:
            if time.monotonic() - self._opened_at < self.policy.open_seconds:
                return False
            self._set(HALF_OPEN)
            self._probe_in_flight = False
        if self._probe_in_flight:
            return False
        self._probe_in_flight = True
        return True

    def is_open(self) -> bool:
        """Would a request be refused now? (Cheap, changes nothing: for routing decisions.)"""
        if self.state == CLOSED:
            return False
        if self.state == OPEN:
            return time.monotonic() - self._opened_at < self.policy.open_seconds
        return self._probe_in_flight

    def abandon(self) -> None:
        """A request let through by ``allow`` ended without a verdict: free the probe slot."""
        if self.state == HALF_OPEN:
            self._probe_in_flight = False

    def record(self, success: bool, *, connect_failure: bool = False) -> None:
        if self.state == HALF_OPEN:
            self._probe_in_flight = False
            if success:
                self._close()
            else:
                self._open()
            return
        if self.state == OPEN:
            return  # a verdict from a request let in before the breaker opened
        self._add(success)
        if success:  # a success cannot trip the breaker: no need to sum the window
            self._consecutive_connect = 0
            return
        calls, failures = self._window()
        self._consecutive_connect = self._consecutive_connect + 1 if connect_failure else 0
        rate_tripped = calls >= self.policy.min_calls and failures / calls > self.policy.failure_rate
        if rate_tripped or self._consecutive_connect >= self.policy.connect_failures:
            self._open()

    def _add(self, success: bool) -> None:
        """Add one call to this second's bucket."""
        now = int(time.monotonic())
        index = now % self.policy.window_seconds
        if self._bucket_second[index] != now:
            self._bucket_second[index] = now
            self._buckets[index] = [0, 0]
        bucket = self._buckets[index]
        bucket[0] += 1
        bucket[1] += not success

    def _window(self) -> tuple[int, int]:
        """The window's (calls, failures)."""
        now, window = int(time.monotonic()), self.policy.window_seconds
        calls = failures = 0
        for second, (c, f) in zip(self._bucket_second, self._buckets, strict=True):
            if now - second < window:
                calls += c
                failures += f
        return calls, failures

    def _set(self, state: str) -> None:
        self.state = state
        if self._on_change is not None:
            self._on_change(state)

    def _open(self) -> None:
        self._opened_at = time.monotonic()
        self._set(OPEN)

    def _close(self) -> None:
        self._consecutive_connect = 0
        self._buckets = [[0, 0] for _ in range(self.policy.window_seconds)]
        self._bucket_second = [0] * self.policy.window_seconds
        self._set(CLOSED)


class Bulkhead:
    def __init__(self, max_in_flight: int) -> None:
        self.max_in_flight = max_in_flight
        self.in_flight = 0

    def try_enter(self) -> bool:
        if self.in_flight >= self.max_in_flight:
            return False
        self.in_flight += 1
        return True

    def leave(self) -> None:
        self.in_flight -= 1


class RetryBudget:
    def __init__(self, ratio: float = 0.2, burst: float = 10.0) -> None:
        self.ratio = ratio
        self.burst = burst
        self.tokens = burst

    def earn(self) -> None:
        self.tokens = min(self.burst, self.tokens + self.ratio)

    def spend(self) -> bool:
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True
