"""What the request path reads: the runtime the app's lifespan builds, and one runtime per cluster.

A reload of the route table swaps ``Runtime.table`` and ``Runtime.clusters`` together
(``with_table``): a cluster that is new gets its pool, breaker and bulkhead; an unchanged
one keeps them (its connections and breaker state survive the reload); a removed or
changed one is returned for the caller to close.
"""

from __future__ import annotations

from dataclasses import dataclass

from flags import Flags
from gateway.accesslog import AccessLog
from gateway.auth import TokenVerifier
from gateway.live import LiveStats
from gateway.metrics import Metrics
from gateway.resilience import STATE_VALUES, Bulkhead, CircuitBreaker, RetryBudget
from gateway.routes import Cluster, RouteTable
from gateway.settings import GatewaySettings
from gateway.shadow import Shadow
from gateway.upstream import Pool


@dataclass(slots=True)
class ClusterRuntime:
    cluster: Cluster
    pool: Pool
    breaker: CircuitBreaker
    bulkhead: Bulkhead


@dataclass(slots=True)
class Runtime:
    """Everything the request path reads; built and closed by the app's lifespan."""

    settings: GatewaySettings
    table: RouteTable
    clusters: dict[str, ClusterRuntime]
    flags: Flags
    verifier: TokenVerifier
    metrics: Metrics
    retry_budget: RetryBudget
    shadow: Shadow
    live: LiveStats
    access_log: AccessLog

    def with_table(self, table: RouteTable) -> list[ClusterRuntime]:
        """Serve ``table`` from now on; returns the cluster runtimes that are no longer used."""
        clusters = build_clusters(table, self.metrics, self.clusters)
        retired = [old for name, old in self.clusters.items() if clusters.get(name) is not old]
        # Two plain assignments, no await in between: a request sees the old pair or the new one.
        self.clusters = clusters
        self.table = table
        return retired


def cluster_runtime(cluster: Cluster, metrics: Metrics) -> ClusterRuntime:
    gauge = metrics.child(metrics.breaker_state, cluster.name)
    gauge.set(STATE_VALUES["closed"])
    return ClusterRuntime(
        cluster=cluster,
        pool=Pool(cluster.host, cluster.port, max_connections=cluster.max_connections),
        breaker=CircuitBreaker(on_change=lambda state: gauge.set(STATE_VALUES[state])),
        bulkhead=Bulkhead(cluster.max_in_flight),
    )


def build_clusters(
    table: RouteTable, metrics: Metrics, current: dict[str, ClusterRuntime] | None = None
) -> dict[str, ClusterRuntime]:
    """One runtime per cluster of ``table``, reusing ``current`` ones whose definition is unchanged."""
    current = current or {}
    clusters = {}
    for name, cluster in table.clusters.items():
        existing = current.get(name)
        clusters[name] = (
            existing
            if existing is not None and existing.cluster == cluster
            else cluster_runtime(cluster, metrics)
        )
    return clusters
