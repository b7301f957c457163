"""The gateway's ASGI app: ``/_gateway/*`` to the admin app, everything else down the proxy path.

The lifespan owns every resource: the route table, one upstream pool + breaker + bulkhead per
cluster, the flags (stores and providers, started here: after uvicorn forks its workers), the
JWKS client and its refresh task, the access log's flush task and the task that publishes this
worker's figures for the others (metrics in flight, live stats, legacy's cost per template) every
second, and two deciders' loops, each decided by the worker holding its lease in the override store:
auto-offload (gateway/autopilot.py) and rollouts (gateway/rollout.py).

A WebSocket upgrade is refused with a 400 envelope: no route proxies WebSockets today.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from pathlib import Path
from typing import Any

import httpx

from flags import build_flags, load_flags_settings
from gateway import openapi
from gateway.accesslog import AccessLog
from gateway.admin import admin_app
from gateway.auth import Jwks, TokenVerifier
from gateway.autopilot import Autopilot
from gateway.candidates import PUBLISH_SECONDS as CANDIDATES_PUBLISH_SECONDS
from gateway.candidates import Candidates
from gateway.errors import envelope
from gateway.live import LiveStats
from gateway.metrics import Metrics
from gateway.proxy import handle
from gateway.resilience import RetryBudget
from gateway.rollout import Rollouts
from gateway.routes import RouteTableError, load_table
from gateway.runtime import Routing, Runtime, build_upstreams
from gateway.settings import GatewaySettings, load_settings
from gateway.shadow import Shadow
from gateway.timeline import Timeline

logger = logging.getLogger("gateway")
PUBLISH_SECONDS = 1.0


class GatewayApp:
    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings
        self.admin = admin_app()
        self.runtime: Runtime | None = None
        self._jwks_client: httpx.AsyncClient | None = None
        self._jwks_task: asyncio.Task[None] | None = None
        self._log_task: asyncio.Task[None] | None = None
        self._publish_task: asyncio.Task[None] | None = None
        self.autopilot: Autopilot | None = None
        self._autopilot_task: asyncio.Task[None] | None = None
        self.rollouts: Rollouts | None = None
        self._rollouts_task: asyncio.Task[None] | None = None
        self._timeline_task: asyncio.Task[None] | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            if scope["path"].startswith("/_gateway/"):
                await self.admin(scope, receive, send)
            elif scope["path"] in openapi.PATHS:  # the API contract, served here (ADR 0019)
                await openapi.serve(scope, receive, send)
            else:
                assert self.runtime is not None, "the lifespan has not run"
                await handle(self.runtime, scope, receive, send)
        elif scope["type"] == "websocket":
            await _refuse_websocket(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def startup(self) -> None:
        settings = self.settings
        table = load_table(settings.routes_file, settings.cluster_urls())
        metrics = Metrics.create()
        routing = Routing(table=table, upstreams=build_upstreams(table, metrics))
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
            routing=routing,
            flags=flags,
            verifier=verifier,
            metrics=metrics,
            retry_budget=RetryBudget(),
            shadow=Shadow(),
            live=LiveStats(settings.live_dir),
            access_log=AccessLog(enabled=settings.access_log),
            candidates=Candidates(settings.live_dir),
        )
        self.admin.state.runtime = self.runtime
        self._log_task = asyncio.create_task(self.runtime.access_log.run())
        self._publish_task = asyncio.create_task(self._publish(self.runtime))
        self.runtime.shadow.on_result = self.runtime.record_shadow  # parity evidence, every worker summed
        # Auto-offload and rollouts: every worker runs both loops; the holder of each lease decides.
        self.autopilot = Autopilot(self.runtime)
        self.admin.state.autopilot = self.autopilot
        self._autopilot_task = asyncio.create_task(self.autopilot.run())
        self.rollouts = Rollouts(self.runtime)
        self.admin.state.rollouts = self.rollouts
        self._rollouts_task = asyncio.create_task(self.rollouts.run())
        # The console's charts: fed once a second from the live figures, never on the request path.
        runtime, timeline = self.runtime, Timeline(settings.live_dir)
        self.admin.state.timeline = timeline
        self._timeline_task = asyncio.create_task(
            timeline.run(
                runtime.live,
                lambda: {n: u.limiter.limit for n, u in runtime.upstreams.items() if u.limiter is not None},
            )
        )

    async def shutdown(self) -> None:
        for task in (self._jwks_task, self._log_task, self._publish_task, self._timeline_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        for task in (self._autopilot_task, self._rollouts_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self.autopilot is not None:
            await self.autopilot.stop()  # the lease back now: another worker decides at its next tick
        if self.rollouts is not None and self.runtime is not None:
            await self.rollouts.lease.release(self.runtime.flags.overrides)
        if self.runtime is not None:
            await self.runtime.shadow.close()
            self.runtime.flags.stop()
            for upstream in self.runtime.upstreams.values():
                await upstream.pool.close()
            self.runtime.live.forget()
            self.runtime.candidates.forget()
            self.runtime.metrics.process_exited()
        if self._jwks_client is not None:
            await self._jwks_client.aclose()

    async def _refresh_jwks(self, jwks: Jwks) -> None:
        # Short and conditional (If-None-Match → 304): a retired key is refused within seconds.
        try:
            while True:
                await asyncio.sleep(self.settings.jwks_refresh_seconds)
                await jwks.refresh()
        finally:
            jwks.close()

    async def _publish(self, runtime: Runtime) -> None:
        """Every second: share this worker's figures, and pick up a changed route table file (so a
        reload through the admin API, answered by one worker, reaches every worker)."""
        routes_file = runtime.settings.routes_file
        seen = _signature(routes_file)
        ticks = 0
        while True:
            await asyncio.sleep(PUBLISH_SECONDS)
            ticks += 1
            try:
                runtime.metrics.publish()
                limits = {n: u.limiter for n, u in runtime.upstreams.items() if u.limiter is not None}
                runtime.metrics.publish_limits(limits)
                runtime.metrics.forget_dead_workers()
                runtime.live.publish()
                if ticks % CANDIDATES_PUBLISH_SECONDS == 0 and runtime.candidates.directory is not None:
                    # Encoded here (the slices change on this loop), written in a thread.
                    await asyncio.to_thread(runtime.candidates.write, runtime.candidates.document())
            except OSError as exc:  # a full disk must not stop the gateway; the figures just age
                logger.warning("cannot publish this worker's figures: %s", exc)
            if (current := _signature(routes_file)) != seen:
                seen = current
                with contextlib.suppress(RouteTableError):  # logged; the table in force stays
                    await runtime.reload()

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


def _signature(path: Path) -> tuple[int, int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return (stat.st_ino, stat.st_mtime_ns, stat.st_size)


async def _refuse_websocket(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """400 in the JSON envelope where the server lets us answer the upgrade with HTTP; else a close."""
    await receive()  # websocket.connect
    if "websocket.http.response" not in scope.get("extensions", {}):
        await send({"type": "websocket.close", "code": 1008})
        return
    body = json.dumps(
        envelope("bad_request", "WebSocket connections are not supported here.", ""),
        separators=(",", ":"),
    ).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "websocket.http.response.start", "status": 400, "headers": headers})
    await send({"type": "websocket.http.response.body", "body": body})


def create_app(settings: GatewaySettings | None = None) -> GatewayApp:
    return GatewayApp(settings or load_settings())
