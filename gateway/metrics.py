"""Prometheus metrics (the list and their labels are in docs/gateway.md), summed over every worker.

Labels use one vocabulary: ``backend`` is the side chosen, ``legacy`` | ``candidate`` (``none``
when the gateway answered before choosing); ``cluster`` is the upstream that served (``legacy``,
``reviews``, …; ``gateway`` when none did).

With several worker processes (``python -m gateway`` sets ``PROMETHEUS_MULTIPROC_DIR`` before
the workers start) prometheus-client's multiprocess mode keeps every worker's values in
memory-mapped files, and a scrape of any worker sums them all: one scrape, every request counted
once. In one process (tests, an embedded app) the registry is read directly.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from gateway.live import LIVE_DIR_ENV

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


_LIVE_GAUGE = re.compile(r"gauge_live\w+_(\d+)\.db")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None


def shared_figures_env(run_dir: Path) -> dict[str, str]:
    """Fresh directories where the workers of one gateway sum their figures, as environment
    variables for the workers to inherit (set before any worker imports prometheus-client).
    Emptied first: figures of an earlier run must not be added to this one's."""
    paths = {MULTIPROC_ENV: run_dir / "metrics", LIVE_DIR_ENV: run_dir / "live"}
    for path in paths.values():
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
    return {name: str(path) for name, path in paths.items()}


@dataclass(frozen=True, slots=True)
class Metrics:
    registry: CollectorRegistry
    requests: Counter
    duration: Histogram
    upstream_errors: Counter
    fallbacks: Counter
    breaker_state: Gauge
    decisions: Counter
    rejected: Counter
    shadow: Counter
    in_flight: Gauge
    shed: Counter
    limit: Gauge
    limit_in_flight: Gauge
    limit_queued: Gauge
    _children: dict[tuple[int, tuple[str, ...]], Any] = field(default_factory=dict)
    # Requests in flight: a plain counter the gauge reads at scrape time (no lock per request).
    _in_flight: list[int] = field(default_factory=lambda: [0])

    def __post_init__(self) -> None:
        if multiprocess_dir() is None:
            self.in_flight.set_function(lambda: self._in_flight[0])

    def publish(self) -> None:
        """Copy per-process figures kept without locks into the shared files (called every second)."""
        if multiprocess_dir() is not None:
            self.in_flight.set(self._in_flight[0])

    def publish_limits(self, limits: Mapping[str, Any]) -> None:
        """Each cluster's limiter (name → ``AdaptiveLimit``) as gauges; called every second."""
        for name, limiter in limits.items():
            self.child(self.limit, name).set(int(limiter.limit))
            self.child(self.limit_in_flight, name).set(limiter.in_flight)
            self.child(self.limit_queued, name).set(limiter.queued)

    def exposition(self) -> bytes:
        """The text a scrape returns: every worker's values summed when there are several."""
        path = multiprocess_dir()
        if path is None:
            return generate_latest(self.registry)
        self.publish()  # this worker's figure is current; the others' at most a second old
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=path)  # type: ignore[no-untyped-call]
        return generate_latest(registry)

    @staticmethod
    def forget_dead_workers() -> None:
        """Drop the live gauges of workers that died without a shutdown (kill -9, OOM): uvicorn
        restarts them under new pids, and their last in-flight and breaker values must not stay
        in the sum for ever. Counters stay: those requests happened."""
        path = multiprocess_dir()
        if path is None:
            return
        for pid in {int(match[1]) for match in map(_LIVE_GAUGE.fullmatch, os.listdir(path)) if match}:
            if not _alive(pid):
                mark_process_dead(pid, path)  # type: ignore[no-untyped-call]

    @staticmethod
    def process_exited() -> None:
        """Drop this process's live gauges (in flight, breaker state) from the sum."""
        path = multiprocess_dir()
        if path is not None:
            mark_process_dead(os.getpid(), path)  # type: ignore[no-untyped-call]

    def request_started(self) -> None:
        self._in_flight[0] += 1

    def request_finished(self) -> None:
        self._in_flight[0] -= 1

    def child(self, metric: Any, *labels: str) -> Any:
        """``metric.labels(*labels)``, remembered: prometheus-client's lookup costs microseconds per call."""
        key = (id(metric), labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found

    @classmethod
    def create(cls) -> Metrics:
        registry = CollectorRegistry()
        return cls(
            registry=registry,
            requests=Counter(
                "gateway_requests_total",
                "Requests by route, backend (legacy|candidate), cluster and status class",
                ["route", "backend", "cluster", "status_class"],
                registry=registry,
            ),
            duration=Histogram(
                "gateway_request_duration_seconds",
                "Time to the response's last byte",
                ["route", "backend", "cluster"],
                buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
                registry=registry,
            ),
            upstream_errors=Counter(
                "gateway_upstream_errors_total",
                "Failed forwards by cluster and stage",
                ["cluster", "stage"],
                registry=registry,
            ),
            fallbacks=Counter(
                "gateway_fallbacks_total",
                "Requests served by legacy after the candidate failed (a retry, limited by the budget)",
                ["route"],
                registry=registry,
            ),
            breaker_state=Gauge(
                "gateway_breaker_state",
                "0 closed, 1 half-open, 2 open (the highest of the live workers)",
                ["cluster"],
                registry=registry,
                multiprocess_mode="livemax",
            ),
            decisions=Counter(
                "gateway_flag_decisions_total",
                "Routing decisions by route, backend and reason (override, split, circuit_open, forced, …)",
                ["route", "backend", "reason"],
                registry=registry,
            ),
            shadow=Counter(
                "gateway_shadow_total",
                "Shadow comparisons by route and result (match, mismatch, error, dropped)",
                ["route", "result"],
                registry=registry,
            ),
            in_flight=Gauge(
                "gateway_requests_in_flight",
                "Requests being handled now (the autoscaler's signal)",
                registry=registry,
                multiprocess_mode="livesum",
            ),
            rejected=Counter(
                "gateway_rejected_total",
                "Requests refused before forwarding",
                ["reason"],
                registry=registry,
            ),
            shed=Counter(
                "gateway_shed_total",
                "Requests shed by a cluster's adaptive concurrency limit (503 overloaded)",
                ["cluster", "route"],
                registry=registry,
            ),
            limit=Gauge(
                "gateway_concurrency_limit",
                "A cluster's adaptive concurrency limit, summed over the live workers",
                ["cluster"],
                registry=registry,
                multiprocess_mode="livesum",
            ),
            limit_in_flight=Gauge(
                "gateway_concurrency_in_flight",
                "Requests admitted by a cluster's limit and not yet answered, all workers",
                ["cluster"],
                registry=registry,
                multiprocess_mode="livesum",
            ),
            limit_queued=Gauge(
                "gateway_concurrency_queued",
                "Requests waiting for a cluster's limit, all workers",
                ["cluster"],
                registry=registry,
                multiprocess_mode="livesum",
            ),
        )
