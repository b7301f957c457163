"""Live traffic per route and backend over the last minute, for the ops console, from every worker.

Each worker records into one bucket per second per (route, backend): requests, errors (5xx and
gateway errors) and a latency histogram (geometric bounds, 25 % apart, so a p99 read from it is
within a quarter of the true value). Recording costs a dict lookup and a bisect.

With several workers each one ``publish``-es its last minute to ``<dir>/live-<pid>.json`` every
second (written to a temporary file, then renamed), and ``snapshot`` sums the files of every
worker seen in the last minute with this process's own figures: whichever worker answers the
admin API, the console shows the whole gateway. Each file also carries the worker's shed counts per
cluster and its shadow results per route over ``PARITY_WINDOW_SECONDS`` (the autopilot's evidence).

Shadow results are kept per second: match, mismatch, error (the candidate did not answer a shadow
sent to it), how many shadows went to the candidate, how many of those it failed (no answer or a
5xx), and the first differing field of the second's first mismatch (``parity.diff``'s words, e.g.
``body:/rating_average``). ``route_figures`` gives one route's last minute of all that, for a
rollout's gates (gateway/rollout.py).
"""

from __future__ import annotations

import bisect
import contextlib
import json
import math
import os
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

WINDOW_SECONDS = 60
LIVE_DIR_ENV = "GATEWAY_LIVE_DIR"  # set by ``python -m gateway`` for its workers
# Shadow results per route for the parity evidence of the autopilot (a longer window than the rest:
# enough samples on a quiet route) and of rollouts (per second), one row per second with results:
# [second, match, mismatch, error, sent to the candidate, failed by the candidate, first difference?]
PARITY_WINDOW_SECONDS = 300
_SHADOW_COLUMNS = {"match": 1, "mismatch": 2, "error": 3}
TO_CANDIDATE, CANDIDATE_FAILED, FIRST_DIFFERENCE = 4, 5, 6
MAX_WHERE_CHARS = 200
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
        # Per cluster: [second, requests shed] pairs, and the adaptive limit as last published.
        self._shed: dict[str, deque[list[int]]] = {}
        # Per route: one row per second of shadow comparisons (see PARITY_WINDOW_SECONDS).
        self._shadow: dict[str, deque[list[Any]]] = {}
        # The first whole second this worker has recorded all of: it knows nothing of those before.
        self.recording_from = math.ceil(time.time())

    def record_shadow(
        self,
        route: str,
        result: str,
        *,
        to_candidate: bool = True,
        candidate_failed: bool | None = None,
        where: str | None = None,
    ) -> None:
        """One shadow comparison's result (``Runtime.record_shadow`` calls this); ``dropped`` proves
        nothing. ``error`` is counted only for a shadow to the candidate (the caller's rule);
        ``candidate_failed`` defaults to that; ``where`` is a mismatch's first differing field."""
        column = _SHADOW_COLUMNS.get(result)
        if column is None:
            return
        second = int(time.time())
        series = self._shadow.get(route)
        if series is None:
            series = self._shadow[route] = deque(maxlen=PARITY_WINDOW_SECONDS)
        if not series or series[-1][0] != second:
            series.append([second, 0, 0, 0, 0, 0])
        row = series[-1]
        row[column] += 1
        if to_candidate:
            row[TO_CANDIDATE] += 1
            failed = result == "error" if candidate_failed is None else candidate_failed
            row[CANDIDATE_FAILED] += failed
        if where is not None and len(row) == FIRST_DIFFERENCE:
            row.append(where[:MAX_WHERE_CHARS])

    def route_figures(self, route: str) -> dict[str, Any]:
        """This worker's last minute of one route, per second: what each backend served (requests,
        errors, latency histogram) and the shadow results (rows as above). Published to the override
        store for a rollout's gates; read on the loop that records (a copy, no I/O). ``from`` is the
        first second it covers (seconds before it are not zeros, they are unknown: not window time)."""
        horizon = int(time.time()) - WINDOW_SECONDS
        document: dict[str, Any] = {
            "from": max(horizon + 1, self.recording_from),
        } | {
            backend: [
                [b.second, b.requests, b.errors, dict(b.latencies)]
                for b in self._series.get((route, backend), ())
                if b.second > horizon
            ]
            for backend in ("legacy", "candidate")
        }
        document["shadow"] = [list(row) for row in self._shadow.get(route, ()) if row[0] > horizon]
        return document

    def _own_shadow(self, horizon: int) -> dict[str, list[list[Any]]]:
        return {route: [row for row in rows if row[0] > horizon] for route, rows in self._shadow.items()}

    def own_figures(self) -> dict[str, Any]:
        """This worker's figures, copied on the loop that records them, for ``snapshot``,
        ``clusters`` and ``shadow_results`` to sum with the other workers' files in a thread."""
        now = int(time.time())
        return {
            "series": self._own(now - WINDOW_SECONDS),
            "clusters": self._own_clusters(now - WINDOW_SECONDS),
            "shadow": self._own_shadow(now - PARITY_WINDOW_SECONDS),
        }

    def shadow_results(
        self, seconds: int = PARITY_WINDOW_SECONDS, own: dict[str, Any] | None = None
    ) -> dict[str, dict[str, int]]:
        """route → {match, mismatch, error} over the last ``seconds``, summed over every worker: the
        parity evidence the autopilot weighs. With ``own`` (``own_figures``) it reads only files: safe
        in a thread."""
        horizon = int(time.time()) - seconds
        result: dict[str, dict[str, int]] = {}
        own = own or {"shadow": self._own_shadow(horizon)}
        for document in self._workers(int(time.time()) - WINDOW_SECONDS, own):
            shadow = document.get("shadow")
            for route, rows in (shadow if isinstance(shadow, dict) else {}).items():
                total = result.setdefault(route, {"match": 0, "mismatch": 0, "error": 0})
                for row in rows:
                    if row[0] > horizon:
                        total["match"] += row[1]
                        total["mismatch"] += row[2]
                        total["error"] += row[3]
        return result

    def record_shed(self, cluster: str) -> None:
        now = int(time.time())
        series = self._shed.get(cluster)
        if series is None:
            series = self._shed[cluster] = deque(maxlen=WINDOW_SECONDS)
        if not series or series[-1][0] != now:
            series.append([now, 0])
        series[-1][1] += 1

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

    def per_second(
        self, after: int, until: int
    ) -> tuple[dict[str, dict[int, tuple[int, int, float]]], dict[str, dict[int, int]]]:
        """This worker's seconds in (``after``, ``until``], all routes together: backend → second →
        (requests, errors, p99 in seconds), and cluster → second → requests shed. What the
        timeline (gateway/timeline.py) takes once a second; nothing on the request path."""
        merged: dict[str, dict[int, _Bucket]] = {}
        for (_, backend), series in self._series.items():
            seconds = merged.setdefault(backend, {})
            for bucket in series:
                if after < bucket.second <= until:
                    total = seconds.setdefault(bucket.second, _Bucket(second=bucket.second))
                    total.requests += bucket.requests
                    total.errors += bucket.errors
                    for index, count in bucket.latencies.items():
                        total.latencies[index] = total.latencies.get(index, 0) + count
        backends = {
            backend: {
                second: (b.requests, b.errors, quantile(b.latencies, b.requests, 0.99))
                for second, b in seconds.items()
            }
            for backend, seconds in merged.items()
            if seconds
        }
        shed = {
            name: {second: count for second, count in rows if after < second <= until}
            for name, rows in self._shed.items()
        }
        return backends, shed

    def _own(self, horizon: int) -> dict[str, list[list[Any]]]:
        """This process's buckets newer than ``horizon``, as JSON-ready rows per "route backend"."""
        return {
            f"{route} {backend}": [
                [b.second, b.requests, b.errors, b.latencies] for b in series if b.second > horizon
            ]
            for (route, backend), series in self._series.items()
        }

    def _own_clusters(self, horizon: int) -> dict[str, Any]:
        shed = {name: [row for row in rows if row[0] > horizon] for name, rows in self._shed.items()}
        return {"shed": shed}

    def publish(self) -> None:
        """Write this worker's last minute for the others (no-op with a single process)."""
        if self.directory is None:
            return
        horizon = int(time.time()) - WINDOW_SECONDS
        path = self.directory / f"live-{os.getpid()}.json"
        tmp = path.with_name(f".{path.name}.tmp")
        document = {"series": self._own(horizon), "clusters": self._own_clusters(horizon)}
        document["shadow"] = self._own_shadow(int(time.time()) - PARITY_WINDOW_SECONDS)
        tmp.write_text(json.dumps(document), encoding="utf-8")
        os.replace(tmp, path)

    def forget(self) -> None:
        """Remove this worker's file (at shutdown)."""
        if self.directory is not None:
            with contextlib.suppress(FileNotFoundError):
                (self.directory / f"live-{os.getpid()}.json").unlink()

    def _workers(self, horizon: int, mine: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Every worker's document: this process from memory (or ``mine``), the others from their files."""
        workers = [mine or {"series": self._own(horizon), "clusters": self._own_clusters(horizon)}]
        if self.directory is None:
            return workers
        own = f"live-{os.getpid()}.json"
        for path in self.directory.glob("live-*.json"):
            if path.name == own:
                continue
            try:
                if path.stat().st_mtime < horizon:
                    continue  # a worker that stopped more than a minute ago
                document = json.loads(path.read_text(encoding="utf-8"))
                if isinstance(document.get("series"), dict):
                    workers.append(document)
            except (OSError, ValueError, AttributeError):
                continue  # being replaced or half-written: the next poll reads it
        return workers

    def snapshot(self, own: dict[str, Any] | None = None) -> dict[str, dict[str, dict[str, float]]]:
        """route → backend → {rps, requests, error_rate, p99_ms, workers} over the last minute,
        summed over every worker (each worker's file is read once). With ``own`` (``own_figures``)
        it reads only files: safe in a thread."""
        horizon = int(time.time()) - WINDOW_SECONDS
        totals: dict[tuple[str, str], dict[str, Any]] = {}
        for document in self._workers(horizon, own):
            for key, rows in document["series"].items():
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
                    "p99_ms": round(quantile(total["hist"], total["requests"], 0.99) * 1000, 2),
                    "workers": total["workers"],
                }
        return result

    def clusters(self, seconds: int = 10, own: dict[str, Any] | None = None) -> dict[str, dict[str, float]]:
        """cluster → {shed (over the last ``seconds``, all workers),
        shed_seconds (how many of those seconds shed anything), last_shed (the newest second that
        shed, within the minute kept; absent if none)}: what the
        autopilot reads to tell whether a cluster is being protected right now. With ``own``
        (``own_figures``) it reads only files: safe in a thread."""
        now = int(time.time())
        horizon = now - seconds
        result: dict[str, dict[str, float]] = {}
        shed_at: dict[str, set[int]] = {}
        for document in self._workers(now - WINDOW_SECONDS, own):
            figures = document.get("clusters") or {}
            for name, rows in (figures.get("shed") or {}).items():
                entry = result.setdefault(name, {"shed": 0, "shed_seconds": 0})
                for second, count in rows:
                    entry["last_shed"] = max(entry.get("last_shed", 0), second)  # for the cool-down
                    if second > horizon:
                        entry["shed"] += count
                        shed_at.setdefault(name, set()).add(second)
        for name, seconds_shedding in shed_at.items():
            result[name]["shed_seconds"] = len(seconds_shedding)
        return result


def quantile(histogram: dict[int, int], count: int, q: float) -> float:
    """The upper bound of the histogram bucket holding the ``q`` quantile."""
    rank = q * count
    seen = 0
    for index in sorted(histogram):
        seen += histogram[index]
        if seen >= rank:
            return BOUNDS[min(index, len(BOUNDS) - 1)]
    return BOUNDS[-1]
