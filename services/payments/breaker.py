"""Per-provider circuit breakers and the weighted order in which providers are tried.

A breaker (one per provider, per worker process) looks at the last ``WINDOW`` charges sent to its
provider. A charge counts as a failure when it was not answered approved or declined, and also as
soon as it has taken longer than ``slow_ms`` (before its answer, so a provider that stops answering
is noticed after a few slow calls rather than after their timeouts). With at least ``MIN_CALLS`` in
the window and ``FAILURE_RATIO`` of them failures, the breaker opens: no charge goes to the provider
for ``open_seconds``; then one probe does (half-open): answered in time, the breaker closes; otherwise
it opens again.
"""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from services.payments.settings import Provider

WINDOW = 20
MIN_CALLS = 5
FAILURE_RATIO = 0.5


class Breaker:
    def __init__(self, open_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.open_seconds = open_seconds
        self.clock = clock
        self.state = "closed"
        self.opened_at = 0.0
        self.probing = False
        self.opened = 0  # how many times it opened (for the providers view and tests)
        self.calls: deque[bool] = deque(maxlen=WINDOW)  # True: a success

    def acquire(self) -> bool:
        """May a charge go to this provider now? In half-open state, only the one probe."""
        if self.state == "open" and self.clock() >= self.opened_at + self.open_seconds:
            self.state, self.probing = "half_open", False
        if self.state == "closed":
            return True
        if self.state == "half_open" and not self.probing:
            self.probing = True
            return True
        return False

    def record(self, ok: bool) -> None:
        """The verdict on one charge that ``acquire`` let through (a slow one as soon as it is slow)."""
        if self.state == "half_open":
            self.probing = False
            if ok:
                self.state = "closed"
                self.calls.clear()
            else:
                self._open()
            return
        if self.state == "open":
            return  # a late verdict on a charge sent before it opened
        self.calls.append(ok)
        failures = self.calls.count(False)
        if len(self.calls) >= MIN_CALLS and failures >= FAILURE_RATIO * len(self.calls):
            self._open()

    def _open(self) -> None:
        self.state, self.opened_at, self.probing = "open", self.clock(), False
        self.opened += 1
        self.calls.clear()

    def snapshot(self) -> dict[str, Any]:
        if self.state == "open" and self.clock() >= self.opened_at + self.open_seconds:
            shown = "half_open"  # the next charge may probe it
        else:
            shown = self.state
        return {
            "breaker": shown,
            "window_calls": len(self.calls),
            "window_failures": self.calls.count(False),
            "times_opened": self.opened,
        }


def weighted_order(providers: Sequence[Provider], rng: random.Random) -> list[Provider]:
    """All providers, a random order in which each comes first in proportion to its weight
    (Efraimidis-Spirakis: sort by u ** (1 / weight), u uniform in (0, 1))."""
    return sorted(providers, key=lambda p: (1.0 - rng.random()) ** (1.0 / p.weight), reverse=True)
