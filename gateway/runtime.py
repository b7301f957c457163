"""What the request path reads: the runtime the app's lifespan builds, and one ``Upstream`` per cluster.

The route table and the clusters' upstreams change together (``Routing``, immutable): a request
reads ``rt.routing`` once, before its first await, and uses that pair to the end, so a reload in
the middle of a request can never make it look up a cluster the table it matched does not have.
A reload (``with_table``) gives a new cluster its pool, breaker and bulkhead; an unchanged one keeps
them (its connections and breaker state survive the reload); a removed or changed one is returned
for the caller to close.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

from flags import Flags
from gateway.accesslog import AccessLog
from gateway.auth import TokenVerifier
from gateway.candidates import Candidates
from gateway.limiter import AdaptiveLimit
from gateway.live import LiveStats
from gateway.metrics import Metrics
from gateway.resilience import STATE_VALUES, Bulkhead, CircuitBreaker, RetryBudget
from gateway.routes import Cluster, Route, RouteTable, RouteTableError, load_table
from gateway.settings import GatewaySettings
from gateway.shadow import Shadow
from gateway.upstream import Pool

logger = logging.getLogger("gateway")


@dataclass(slots=True)
class Upstream:
    """One cluster as the request path uses it: where it is, its connections and its protection."""

    cluster: Cluster
    pool: Pool
    breaker: CircuitBreaker
    bulkhead: Bulkhead
    limiter: AdaptiveLimit | None = None


@dataclass(frozen=True, slots=True)
class Routing:
    table: RouteTable
    upstreams: Mapping[str, Upstream]


@dataclass(slots=True)
class Runtime:
    """Everything the request path reads; built and closed by the app's lifespan."""

    settings: GatewaySettings
    routing: Routing
    flags: Flags
    verifier: TokenVerifier
    metrics: Metrics
    retry_budget: RetryBudget
    shadow: Shadow
    live: LiveStats
    access_log: AccessLog
    # What legacy serves per path template (gateway/candidates.py: the next routes to strangle).
    candidates: Candidates = field(default_factory=Candidates)
    # Route → share of its reads shadowed while a rollout runs (set by gateway/rollout.py's loop).
    shadow_boost: Mapping[str, float] = field(default_factory=dict)

    @property
    def table(self) -> RouteTable:
        return self.routing.table

    def shadow_rate(self, route: Route) -> float:
        """The share of ``route``'s reads shadowed now: the table's, or more while a rollout runs."""
        boost = self.shadow_boost.get(route.id)
        return route.shadow_rate if boost is None else max(boost, route.shadow_rate)

    def record_shadow(
        self, route: str, result: str, cluster: str, status: int | None = None, where: str | None = None
    ) -> None:
        """``Shadow``'s callback: a comparison as parity evidence (auto-offload, rollouts), summed
        across workers. A shadow that got no answer (or a 5xx) counts against the candidate only when
        it went to the candidate: legacy failing a shadow says nothing about the candidate."""
        entry = self.table.by_id(route)
        to_candidate = entry is not None and cluster == entry.candidate
        if result == "error" and not to_candidate:
            return
        failed = to_candidate and (result == "error" or (status is not None and status >= 500))
        self.live.record_shadow(
            route, result, to_candidate=to_candidate, candidate_failed=failed, where=where
        )

    @property
    def upstreams(self) -> Mapping[str, Upstream]:
        return self.routing.upstreams

    async def reload(self) -> int:
        """Re-read the route table file: routes and upstreams swap together, retired pools close.
        Raises ``RouteTableError`` (the table in force stays) when the file is malformed."""
        try:
            table = load_table(self.settings.routes_file, self.settings.cluster_urls())
        except RouteTableError as exc:
            logger.warning("keeping the route table in force: %s", exc)
            raise
        for retired in self.with_table(table):
            await retired.pool.close()
        return len(table.routes)

    def with_table(self, table: RouteTable) -> list[Upstream]:
        """Serve ``table`` from now on; returns the upstreams that are no longer used."""
        current = self.routing.upstreams
        upstreams = build_upstreams(table, self.metrics, current)
        retired = [old for name, old in current.items() if upstreams.get(name) is not old]
        self.routing = Routing(table=table, upstreams=upstreams)
        return retired


def upstream(cluster: Cluster, metrics: Metrics) -> Upstream:
    gauge = metrics.child(metrics.breaker_state, cluster.name)
    gauge.set(STATE_VALUES["closed"])
    return Upstream(
        cluster=cluster,
        pool=Pool(cluster.host, cluster.port, max_connections=cluster.max_connections),
        breaker=CircuitBreaker(on_change=lambda state: gauge.set(STATE_VALUES[state])),
        bulkhead=Bulkhead(cluster.max_in_flight),
        limiter=AdaptiveLimit(cluster.limit) if cluster.limit is not None else None,
    )


def build_upstreams(
    table: RouteTable, metrics: Metrics, current: Mapping[str, Upstream] | None = None
) -> dict[str, Upstream]:
    """One upstream per cluster of ``table``, reusing ``current`` ones whose definition is unchanged."""
    current = current or {}
    upstreams = {}
    for name, cluster in table.clusters.items():
        existing = current.get(name)
        unchanged = existing is not None and existing.cluster == cluster
        upstreams[name] = existing if unchanged and existing is not None else upstream(cluster, metrics)
    return upstreams
