"""Shadow traffic and capture: what the gateway does for QA after a client has its answer.

Shadow: for a sampled GET/HEAD, the same request (same identity assertion) goes to the other
backend once the client's response is sent; the two answers are compared with the parity differ
and counted in ``gateway_shadow_total{route,result}`` (match | mismatch | error | dropped). The
last mismatches (bodies capped) stay in a bounded buffer for the admin API. At most
``max_in_flight`` shadow requests run at once; beyond that a sample is dropped and counted, so
shadow work never queues behind a slow backend or delays anyone.

Capture: a sampled request is appended to ``GATEWAY_CAPTURE_FILE`` as one JSON line (route,
method, path, query, persona as ``user:<id>`` or ``anonymous``; never tokens or bodies) for
``parity run`` to replay.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.errors import UpstreamError
from gateway.upstream import Pool
from parity.diff import Observation, compare

logger = logging.getLogger("gateway.shadow")
BODY_CAP = 4096


@dataclass(slots=True)
class Shadow:
    max_in_flight: int = 16
    timeout: float = 2.0
    in_flight: int = 0
    mismatches: collections.deque[dict[str, Any]] = field(
        default_factory=lambda: collections.deque(maxlen=50)
    )
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    counts: collections.Counter[tuple[str, str]] = field(default_factory=collections.Counter)
    # Told every result: route, result, the cluster the shadow went to, the shadow's status (None
    # without an answer) and a mismatch's first differing field (the parity evidence of the
    # autopilot and of rollouts: ``Runtime.record_shadow``).
    on_result: Callable[[str, str, str, int | None, str | None], None] | None = None

    def _count(
        self,
        metrics: Any,
        route: str,
        result: str,
        cluster: str = "",
        status: int | None = None,
        where: str | None = None,
    ) -> None:
        self.counts[(route, result)] += 1
        metrics.shadow.labels(route, result).inc()
        if self.on_result is not None:
            self.on_result(route, result, cluster, status, where)

    def match_rate(self, route: str) -> float | None:
        compared = self.counts[(route, "match")] + self.counts[(route, "mismatch")]
        return round(self.counts[(route, "match")] / compared, 4) if compared else None

    def submit(self, metrics: Any, route: str, work: Any, on_done: Callable[[], None] | None = None) -> None:
        """Start ``work`` (a coroutine) unless too many are running; never waits. ``on_done`` runs
        once either way (when the work ends, or at once when it is dropped): e.g. freeing the
        limiter slot the shadow was given."""
        if self.in_flight >= self.max_in_flight:
            work.close()
            try:
                self._count(metrics, route, "dropped")
            finally:
                if on_done is not None:
                    on_done()
            return
        self.in_flight += 1
        task = asyncio.create_task(work)
        self.tasks.add(task)
        task.add_done_callback(self._done)
        if on_done is not None:
            task.add_done_callback(lambda _: on_done())

    def _done(self, task: asyncio.Task[None]) -> None:
        self.in_flight -= 1
        self.tasks.discard(task)

    async def compare(
        self,
        metrics: Any,
        route: str,
        pool: Pool,
        request: tuple[str, bytes, list[tuple[bytes, bytes]]],
        primary: Observation,
        primary_backend: str,
        shadow_backend: str,
    ) -> None:
        method, target, headers = request
        try:
            response = await pool.request(
                method, target, headers, connect_timeout=self.timeout, read_timeout=self.timeout
            )
            body = await response.read()
        except UpstreamError:
            self._count(metrics, route, "error", shadow_backend)
            return
        other = Observation.of(
            response.status, {k.decode(): v.decode("latin-1") for k, v in response.headers}, body
        )
        differences = compare(primary, other)
        result, where = ("mismatch", differences[0].where) if differences else ("match", None)
        self._count(metrics, route, result, shadow_backend, response.status, where)
        if differences:
            self.mismatches.append(
                {
                    "route": route,
                    "method": method,
                    "target": target.decode("latin-1"),
                    "at": time.time(),
                    "primary": {
                        "backend": primary_backend,
                        "status": primary.status,
                        "body": primary.body[:BODY_CAP].decode("utf-8", "replace"),
                    },
                    "shadow": {
                        "backend": shadow_backend,
                        "status": other.status,
                        "body": body[:BODY_CAP].decode("utf-8", "replace"),
                    },
                    # The differ's words are control/candidate; here either side may be the candidate.
                    "differences": [
                        f"{d.where}: primary {d.control} != shadow {d.candidate}" for d in differences[:20]
                    ],
                }
            )

    async def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


def capture_line(route: str, method: str, path: bytes, query: bytes, user_id: str | None) -> str:
    return json.dumps(
        {
            "route": route,
            "method": method,
            "path": path.decode("latin-1"),
            "query": query.decode("latin-1"),
            "persona": f"user:{user_id}" if user_id else "anonymous",
            "at": round(time.time(), 3),
        }
    )


def append_capture(path: Path, line: str) -> None:
    try:
        with path.open("a", encoding="utf-8") as capture:
            capture.write(line + "\n")  # one small append: whole lines even with several workers
    except OSError as exc:
        logger.warning("cannot write the capture file %s: %s", path, exc)
