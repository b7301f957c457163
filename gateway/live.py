"""Live traffic per route and backend over the last minute, for the ops console (per worker process).

One bucket per second per (route, backend): requests, errors (5xx and gateway errors) and up to
``SAMPLES`` latencies for the p99. Recording costs a dict lookup and an append.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

WINDOW_SECONDS = 60
SAMPLES = 256


@dataclass(slots=True)
class _Bucket:
    second: int
    requests: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)


class LiveStats:
    def __init__(self) -> None:
        self._series: dict[tuple[str, str], deque[_Bucket]] = {}

    def record(self, route: str, backend: str, status: int, seconds: float) -> None:
        now = int(time.time())
        series = self._series.get((route, backend))
        if series is None:
            series = self._series[(route, backend)] = deque(maxlen=WINDOW_SECONDS)
        if not series or series[-1].second != now:
            series.append(_Bucket(second=now))
        bucket = series[-1]
        bucket.requests += 1
        bucket.errors += status >= 500
        if len(bucket.latencies) < SAMPLES:
            bucket.latencies.append(seconds)

    def snapshot(self, route: str) -> dict[str, dict[str, float]]:
        """backend → {rps, error_rate, p99_ms} over the last minute."""
        horizon = int(time.time()) - WINDOW_SECONDS
        result = {}
        for (name, backend), series in self._series.items():
            if name != route:
                continue
            buckets = [b for b in series if b.second > horizon]
            requests = sum(b.requests for b in buckets)
            if not requests:
                continue
            latencies = sorted(latency for b in buckets for latency in b.latencies)
            result[backend] = {
                "rps": round(requests / WINDOW_SECONDS, 2),
                "error_rate": round(sum(b.errors for b in buckets) / requests, 4),
                "p99_ms": round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000, 2),
            }
        return result
