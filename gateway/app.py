"""The gateway's ASGI app: ``/_gateway/*`` to the admin app, everything else down the proxy path.

The lifespan owns every resource: the route table, one upstream pool + breaker + bulkhead per
cluster, the flags (stores and providers, started here: after uvicorn forks its workers), the
JWKS client and its refresh task.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import httpx

from flags import build_flags, load_flags_settings
from gateway.accesslog import AccessLog
from gateway.admin import admin_app
from gateway.auth import Jwks, TokenVerifier
from gateway.live import LiveStats
from gateway.metrics import Metrics
from gateway.proxy import ClusterRuntime, Runtime, handle
from gateway.resilience import Bulkhead, CircuitBreaker, RetryBudget
from gateway.routes import load_table
from gateway.settings import GatewaySettings, load_settings
from gateway.shadow import Shadow
from gateway.upstream import Pool

logger = logging.getLogger("gateway")
JWKS_REFRESH_SECONDS = 300.0


class GatewayApp:
    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings
        self.admin = admin_app()
        self.runtime: Runtime | None = None
        self._jwks_client: httpx.AsyncClient | None = None
        self._jwks_task: asyncio.Task[None] | None = None
        self._log_task: asyncio.Task[None] | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            if scope["path"].startswith("/_gateway/"):
                await self.admin(scope, receive, send)
            else:
                assert self.runtime is not None, "the lifespan has not run"
                await handle(self.runtime, scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def startup(self) -> None:
        settings = self.settings
        table = load_table(settings.routes_file, settings.cluster_urls())
        clusters = {
            name: ClusterRuntime(
                cluster=cluster,
                pool=Pool(cluster.host, cluster.port, max_connections=cluster.max_connections),
                breaker=CircuitBreaker(),
                bulkhead=Bulkhead(cluster.max_in_flight),
            )
            for name, cluster in table.clusters.items()
        }
        flags = build_flags(load_flags_settings())
        flags.start()
        self._jwks_client = httpx.AsyncClient()
        jwks = Jwks(settings.jwks_url, self._jwks_client)
        if not await jwks.refresh():
            logger.warning("starting without signing keys; tokens fail until %s answers", settings.jwks_url)
        self._jwks_task = asyncio.create_task(self._refresh_jwks(jwks))
        verifier = TokenVerifier(
            jwks,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            max_cache=settings.max_token_cache,
        )
        self.runtime = Runtime(
            settings=settings,
            table=table,
            clusters=clusters,
            flags=flags,
            verifier=verifier,
            metrics=Metrics.create(),
            retry_budget=RetryBudget(),
            shadow=Shadow(),
            live=LiveStats(),
            access_log=AccessLog(enabled=settings.access_log),
        )
        self.admin.state.runtime = self.runtime
        self._log_task = asyncio.create_task(self.runtime.access_log.run())

    async def shutdown(self) -> None:
        for task in (self._jwks_task, self._log_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self.runtime is not None:
            await self.runtime.shadow.close()
            self.runtime.flags.stop()
            for runtime in self.runtime.clusters.values():
                await runtime.pool.close()
        if self._jwks_client is not None:
            await self._jwks_client.aclose()

    async def _refresh_jwks(self, jwks: Jwks) -> None:
        while True:
            await asyncio.sleep(JWKS_REFRESH_SECONDS)
            await jwks.refresh()

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:
                    logger.exception("gateway start-up failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return


def create_app(settings: GatewaySettings | None = None) -> GatewayApp:
    return GatewayApp(settings or load_settings())
