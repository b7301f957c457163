"""Prometheus metrics, named as ARCHITECTURE.md lists them (one registry per app)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


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
    _children: dict[tuple[int, tuple[str, ...]], Any] = field(default_factory=dict)
    # Requests in flight: a plain counter the gauge reads at scrape time (no lock per request).
    _in_flight: list[int] = field(default_factory=lambda: [0])

    def __post_init__(self) -> None:
        self.in_flight.set_function(lambda: self._in_flight[0])

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
                "Requests by route, backend and status class",
                ["route", "backend", "status_class"],
                registry=registry,
            ),
            duration=Histogram(
                "gateway_request_duration_seconds",
                "Time to the response's last byte",
                ["route", "backend"],
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
                "Requests served by legacy after the candidate failed",
                ["route"],
                registry=registry,
            ),
            breaker_state=Gauge(
                "gateway_breaker_state",
                "0 closed, 1 half-open, 2 open",
                ["cluster"],
                registry=registry,
            ),
            decisions=Counter(
                "gateway_flag_decisions_total",
                "Routing decisions",
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
            ),
            rejected=Counter(
                "gateway_rejected_total",
                "Requests refused before forwarding",
                ["reason"],
                registry=registry,
            ),
        )
