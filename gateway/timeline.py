"""The whole gateway's last 15 minutes, second by second, for the console's charts.

Per backend (``legacy``, ``candidate``; all routes together): requests, errors and p99. Per cluster
with an adaptive limit: the limit and the requests shed. Each worker keeps a ring of
``WINDOW_SECONDS`` seconds, fed just after every whole second from its own live figures
(``LiveStats.per_second``), so the request path pays nothing beyond ``LiveStats.record``.

With several workers each one also writes its ring to ``<dir>/timeline-<pid>.json`` (temporary
file, then rename): per-second aggregates only, about 25 bytes a second per backend and cluster,
at most ~70 KB. ``merged`` sums every worker's file with this process's ring:

* requests, errors, shed and the limit are summed exactly (each worker has its own limit, so the
  gateway's is their sum);
* p99 is the highest of the workers' p99s for that second. That is an upper bound of the gateway's
  p99 (if no worker has more than 1 % of its requests above x, neither has their sum), and close
  to it when the workers share the traffic evenly, as uvicorn's do; at a quiet second one slow
  request on one worker shows as the p99. A worker's own p99 is the top of its histogram bucket
  (within 25 % above the true value, see gateway/live.py).

A worker that stopped (or was killed and restarted under a new pid) keeps its file: its seconds
stay in the charts until they leave the window, then the file is ignored and swept. A file that is
half-written or not well formed is skipped until its next write.

``markers`` turns audit entries into the charts' markers: one per change (a flip-all writes one
entry per route, all with one time, actor and reason).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Collection, Iterable, Mapping
from pathlib import Path
from typing import Any

from flags.model import AuditEntry
from gateway.live import LiveStats

logger = logging.getLogger("gateway")

WINDOW_SECONDS = 900
# A worker feeds and publishes second s just after s + 1 begins (``TICK_OFFSET``), so every file has
# it by about s + 1.1: the newest second shown is 2 s old, which leaves a busy event loop (a late
# tick) most of a second before a point would be drawn short of that worker's requests.
LAG_SECONDS = 2
TICK_OFFSET = 0.05
FILE_PREFIX = "timeline-"
BACKENDS = ("legacy", "candidate")

# (second, requests, errors, p99 in ms) and (second, limit or None, requests shed), each kept with
# its JSON text: publishing every second then joins strings instead of encoding 2,700 rows again.
BackendRow = tuple[int, int, int, float]
ClusterRow = tuple[int, float | None, int]


class Timeline:
    def __init__(self, directory: Path | None = None, window: int = WINDOW_SECONDS) -> None:
        self.directory = directory
        self.window = window
        self._backends: dict[str, deque[tuple[BackendRow, str]]] = {}
        self._clusters: dict[str, deque[tuple[ClusterRow, str]]] = {}
        self._fed: int | None = None  # the newest second taken from the live figures

    def feed(self, live: LiveStats, limits: Mapping[str, float], now: float) -> None:
        """Take the seconds completed since the last feed; each gets the limits as they are now."""
        until = int(now) - 1
        after = until - 1 if self._fed is None else max(self._fed, until - self.window)
        if until <= after:
            return  # fed already this second, or the clock went back
        self._fed = until
        backends, shed = live.per_second(after, until)
        for backend, seconds in backends.items():
            ring = self._backends.setdefault(backend, deque(maxlen=self.window))
            for second in sorted(seconds):
                requests, errors, p99 = seconds[second]
                row = (second, requests, errors, round(p99 * 1000, 1))
                ring.append((row, _text(row)))
        for name in sorted(set(limits) | set(shed)):
            cluster = self._clusters.setdefault(name, deque(maxlen=self.window))
            limit = float(limits[name]) if name in limits else None
            shed_at = shed.get(name, {})
            for second in range(after + 1, until + 1):
                cluster_row = (second, limit, shed_at.get(second, 0))
                cluster.append((cluster_row, _text(cluster_row)))

    def own(self, now: float) -> dict[str, Any]:
        """This worker's rows in the window ending at ``now``: a copy, made on the event loop (which
        appends to the rings) for ``merged`` to use in another thread."""
        horizon = int(now) - self.window - LAG_SECONDS
        return {
            kind: {name: [row for row, _ in ring if row[0] > horizon] for name, ring in rings.items()}
            for kind, rings in (("backends", self._backends), ("clusters", self._clusters))
        }

    def publish(self, now: float) -> None:
        """Write this worker's window for the others and sweep files that left the window (no-op
        with a single process)."""
        if self.directory is None:
            return
        horizon = int(now) - self.window - LAG_SECONDS
        document = ",".join(
            f'"{kind}":{{'
            + ",".join(
                f"{json.dumps(name)}:[" + ",".join(text for row, text in ring if row[0] > horizon) + "]"
                for name, ring in rings.items()
            )
            + "}"
            for kind, rings in (("backends", self._backends), ("clusters", self._clusters))
        )
        path = self.directory / f"{FILE_PREFIX}{os.getpid()}.json"
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text("{" + document + "}", encoding="utf-8")
        os.replace(tmp, path)
        for other in self.directory.glob(f"{FILE_PREFIX}*.json"):
            with contextlib.suppress(OSError):
                if other != path and other.stat().st_mtime < horizon:
                    other.unlink()  # a worker gone for longer than the window: nothing of it is shown

    async def run(self, live: LiveStats, limits: Callable[[], Mapping[str, float]]) -> None:
        """Feed and publish just after every whole second, until cancelled."""
        while True:
            delay = 1 + TICK_OFFSET - time.time() % 1
            await asyncio.sleep(delay - 1 if delay > 1 else delay)
            try:
                now = time.time()
                self.feed(live, limits(), now)
                self.publish(now)
            except OSError as exc:  # a full disk must not stop the gateway; the charts just age
                logger.warning("cannot publish this worker's timeline: %s", exc)

    def _others(self, horizon: int) -> list[dict[str, Any]]:
        if self.directory is None:
            return []
        own = f"{FILE_PREFIX}{os.getpid()}.json"
        documents = []
        for path in self.directory.glob(f"{FILE_PREFIX}*.json"):
            if path.name == own:
                continue
            try:
                if path.stat().st_mtime < horizon:
                    continue  # stopped before the window began
                document = _parse(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue  # being replaced, half-written or not ours: the next read has it
            documents.append(document)
        return documents

    def merged(self, now: float, own: dict[str, Any] | None = None) -> dict[str, Any]:
        """The whole gateway's window ending ``LAG_SECONDS`` before ``now``: one value per second
        (index 0 is ``start``) per backend and cluster, summed over every worker (see the module
        docstring for p99). Reads files: off the event loop, with ``own`` taken on it."""
        end = int(now) - LAG_SECONDS
        start = end - self.window + 1
        size = self.window
        backends: dict[str, dict[str, list[Any]]] = {}
        clusters: dict[str, dict[str, list[Any]]] = {}

        def backend(name: str) -> dict[str, list[Any]]:
            return backends.setdefault(
                name, {"requests": [0] * size, "errors": [0] * size, "p99_ms": [None] * size}
            )

        for name in BACKENDS:
            backend(name)
        workers = 0
        for document in [self.own(now) if own is None else own, *self._others(start - 1)]:
            seen = False
            for name, rows in document["backends"].items():
                series = backend(name)
                for second, requests, errors, p99 in rows:
                    if start <= second <= end:
                        seen = True
                        i = second - start
                        series["requests"][i] += requests
                        series["errors"][i] += errors
                        previous = series["p99_ms"][i]
                        series["p99_ms"][i] = p99 if previous is None else max(previous, p99)
            for name, rows in document["clusters"].items():
                series = clusters.setdefault(name, {"limit": [None] * size, "shed": [0] * size})
                for second, limit, shed in rows:
                    if start <= second <= end:
                        seen = True
                        i = second - start
                        if limit is not None:
                            series["limit"][i] = (series["limit"][i] or 0) + limit
                        series["shed"][i] += shed
            workers += seen
        for series in backends.values():
            series["error_rate"] = [
                round(errors / requests, 4) if requests else None
                for requests, errors in zip(series["requests"], series["errors"], strict=True)
            ]
        return {
            "now": now,
            "start": start,
            "end": end,
            "resolution_seconds": 1,
            "window_seconds": size,
            "workers": workers,
            "backends": backends,
            "clusters": clusters,
        }


_NUMBER = {int, float}
# Per column after the second: the types a row may hold there (a cluster's limit may be null).
_COLUMNS = {"backends": ({int}, {int}, _NUMBER), "clusters": ({*_NUMBER, type(None)}, {int})}


def _text(row: tuple[Any, ...]) -> str:
    return json.dumps(row, separators=(",", ":"), allow_nan=False)


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number")


def _parse(text: str) -> dict[str, Any]:
    """Another worker's document, or ValueError when it is not one (half-written, hand-edited,
    another version). Checked whole before anything of it is summed: column by column, which
    costs a few set lookups per row (the files hold up to 2,700 rows)."""
    document = json.loads(text, parse_constant=_reject_constant)  # no NaN or Infinity
    if not isinstance(document, dict):
        raise ValueError("not an object")
    result: dict[str, Any] = {}
    for kind, columns in _COLUMNS.items():
        groups = document.get(kind)
        if not isinstance(groups, dict):
            raise ValueError(f"no {kind}")
        width = len(columns) + 1
        for name, rows in groups.items():
            if not isinstance(rows, list) or not all(type(row) is list and len(row) == width for row in rows):
                raise ValueError(f"{kind}.{name}: rows of {width} values expected")
            for index, allowed in enumerate((frozenset({int}), *columns)):
                if not {type(row[index]) for row in rows} <= allowed:
                    raise ValueError(f"{kind}.{name}: column {index} has a value of the wrong type")
        result[kind] = groups
    return result


def markers(entries: Iterable[AuditEntry], routes: Collection[str]) -> list[dict[str, Any]]:
    """One marker per change, oldest first: ``at``, ``route`` (``*`` when it covered every route of
    ``routes``, else the routes it covered, comma-separated), ``routes``, ``action`` (``set`` or
    ``release``), ``to`` (``candidate``, ``legacy``, ``candidate 25 %``, or None for a release),
    ``actor`` and ``reason``. Entries written by one change share time, actor and reason."""
    groups: dict[tuple[float, str, str, str, str | None], set[str]] = {}
    for entry in entries:
        key = (entry.at, entry.action, entry.actor, entry.reason, _target(entry.after))
        groups.setdefault(key, set()).add(entry.route)
    result = []
    for (at, action, actor, reason, to), covered in sorted(groups.items(), key=lambda item: item[0][0]):
        everything = bool(routes) and set(routes) <= covered
        result.append(
            {
                "at": at,
                "route": "*" if everything else ", ".join(sorted(covered)),
                "routes": sorted(covered),
                "action": action,
                "to": to,
                "actor": actor,
                "reason": reason,
            }
        )
    return result


def _target(after: Mapping[str, Any] | None) -> str | None:
    if after is None:
        return None
    percent = after.get("percent")
    backend = str(after.get("backend"))
    return backend if percent is None else f"{backend} {percent} %"
