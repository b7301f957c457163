"""Live traffic per route and backend over the last minute, for the ops console, from every worker.

Each worker records into one bucket per second per (route, backend): requests, errors (5xx and
gateway errors) and a latency histogram (geometric bounds, 25 % apart, so a p99 read from it is
within a quarter of the true value). Recording costs a dict lookup and a bisect.

With several workers each one ``publish``-es its last minute to ``<dir>/live-<pid>.json`` every
second (written to a temporary file, then renamed), and ``snapshot`` sums the files of every
worker seen in the last minute with this process's own figures: whichever worker answers the
admin API, the console shows the whole gateway.
"""

from __future__ import annotations

import bisect
import contextlib
import json
import os
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

WINDOW_SECONDS = 60
LIVE_DIR_ENV = "GATEWAY_LIVE_DIR"  # set by ``python -m gateway`` for its workers
# 0.5 ms … ~60 s, each bound 25 % above the previous one.
BOUNDS: tuple[float, ...] = tuple(0.0005 * 1.25**i for i in range(53))


@dataclass(slots=True)
class _Bucket:
    second: int
    requests: int = 0
    errors: int = 0
    latencies: dict[int, int] = field(default_factory=dict)  # histogram index → count


class LiveStats:
    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory
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
        index = bisect.bisect_left(BOUNDS, seconds)
        bucket.latencies[index] = bucket.latencies.get(index, 0) + 1

    def _own(self, horizon: int) -> dict[str, list[list[Any]]]:
        """This process's buckets newer than ``horizon``, as JSON-ready rows per "route backend"."""
        return {
            f"{route} {backend}": [
                [b.second, b.requests, b.errors, b.latencies] for b in series if b.second > horizon
            ]
            for (route, backend), series in self._series.items()
        }

    def publish(self) -> None:
        """Write this worker's last minute for the others (no-op with a single process)."""
        if self.directory is None:
            return
        horizon = int(time.time()) - WINDOW_SECONDS
        path = self.directory / f"live-{os.getpid()}.json"
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps({"series": self._own(horizon)}), encoding="utf-8")
        os.replace(tmp, path)

    def forget(self) -> None:
        """Remove this worker's file (at shutdown)."""
        if self.directory is not None:
            with contextlib.suppress(FileNotFoundError):
                (self.directory / f"live-{os.getpid()}.json").unlink()

    def _workers(self, horizon: int) -> list[dict[str, list[list[Any]]]]:
        """Every worker's rows: this process from memory, the others from their files."""
        workers = [self._own(horizon)]
        if self.directory is None:
            return workers
        own = f"live-{os.getpid()}.json"
        for path in self.directory.glob("live-*.json"):
            if path.name == own:
                continue
            try:
                if path.stat().st_mtime < horizon:
                    continue  # a worker that stopped more than a minute ago
                workers.append(json.loads(path.read_text(encoding="utf-8"))["series"])
            except (OSError, ValueError, KeyError):
                continue  # being replaced or half-written: the next poll reads it
        return workers

    def snapshot(self) -> dict[str, dict[str, dict[str, float]]]:
        """route → backend → {rps, requests, error_rate, p99_ms, workers} over the last minute,
        summed over every worker (each worker's file is read once)."""
        horizon = int(time.time()) - WINDOW_SECONDS
        totals: dict[tuple[str, str], dict[str, Any]] = {}
        for series in self._workers(horizon):
            for key, rows in series.items():
                route, _, backend = key.partition(" ")
                rows = [row for row in rows if row[0] > horizon]
                if not rows:
                    continue
                total = totals.setdefault(
                    (route, backend), {"requests": 0, "errors": 0, "hist": {}, "workers": 0}
                )
                total["workers"] += 1
                for _, requests, errors, latencies in rows:
                    total["requests"] += requests
                    total["errors"] += errors
                    for index, count in latencies.items():
                        total["hist"][int(index)] = total["hist"].get(int(index), 0) + count
        result: dict[str, dict[str, dict[str, float]]] = {}
        for (route, backend), total in totals.items():
            if total["requests"]:
                result.setdefault(route, {})[backend] = {
                    "rps": round(total["requests"] / WINDOW_SECONDS, 2),
                    "requests": total["requests"],
                    "error_rate": round(total["errors"] / total["requests"], 4),
                    "p99_ms": round(_quantile(total["hist"], total["requests"], 0.99) * 1000, 2),
                    "workers": total["workers"],
                }
        return result


def _quantile(histogram: dict[int, int], count: int, q: float) -> float:
    """The upper bound of the histogram bucket holding the ``q`` quantile."""
    rank = q * count
    seen = 0
    for index in sorted(histogram):
        seen += histogram[index]
        if seen >= rank:
            return BOUNDS[min(index, len(BOUNDS) - 1)]
    return BOUNDS[-1]
