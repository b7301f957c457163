"""Per-cluster protection: a circuit breaker and a bulkhead.

Breaker: closed → open after ``failure_threshold`` consecutive failures, or when at least
``min_calls`` of the last ``window`` calls include more than ``failure_rate`` failures;
open → half-open after ``open_seconds``: one probe is let through; its success closes the
breaker, its failure opens it again.

Bulkhead: at most ``max_in_flight`` requests at once; one more is refused at once
(503 + Retry-After), never queued.

Retry budget: every request earns ``ratio`` of a token (at most ``burst`` saved); a
retry or fallback spends one, so they stay under ``ratio`` of the traffic even when a
backend fails for everyone (no retry storm on top of an outage).
"""

from __future__ import annotations

import collections
import time
from dataclasses import dataclass

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
STATE_VALUES = {CLOSED: 0, HALF_OPEN: 1, OPEN: 2}


@dataclass(frozen=True, kw_only=True, slots=True)
class BreakerPolicy:
    failure_threshold: int = 5
    failure_rate: float = 0.5
    window: int = 20
    min_calls: int = 10
    open_seconds: float = 5.0


class CircuitBreaker:
    def __init__(self, policy: BreakerPolicy | None = None) -> None:
        self.policy = policy or BreakerPolicy()
        self.state = CLOSED
        self._consecutive = 0
        self._recent: collections.deque[bool] = collections.deque(maxlen=self.policy.window)
        self._opened_at = 0.0
        self._probe_in_flight = False

    def allow(self) -> bool:
        """May a request go to this cluster now? (In half-open, only the single probe.)"""
        if self.state == CLOSED:
            return True
        if self.state == OPEN:
            if time.monotonic() - self._opened_at < self.policy.open_seconds:
                return False
            self.state = HALF_OPEN
            self._probe_in_flight = False
        if self._probe_in_flight:
            return False
        self._probe_in_flight = True
        return True

    def record(self, success: bool) -> None:
        if self.state == HALF_OPEN:
            self._probe_in_flight = False
            if success:
                self._close()
            else:
                self._open()
            return
        self._recent.append(success)
        self._consecutive = 0 if success else self._consecutive + 1
        failures = self._recent.count(False)
        rate_tripped = (
            len(self._recent) >= self.policy.min_calls
            and failures / len(self._recent) > self.policy.failure_rate
        )
        if self.state == CLOSED and (self._consecutive >= self.policy.failure_threshold or rate_tripped):
            self._open()

    def _open(self) -> None:
        self.state = OPEN
        self._opened_at = time.monotonic()

    def _close(self) -> None:
        self.state = CLOSED
        self._consecutive = 0
        self._recent.clear()


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
