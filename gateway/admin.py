"""``/_gateway/*``: health, readiness, metrics and the admin API (Starlette; off the hot path).

Admin endpoints need ``Authorization: Bearer $GATEWAY_ADMIN_TOKEN``:

* ``GET  /_gateway/admin/routes``: every route with its decision source and share, breaker state
* ``POST /_gateway/admin/overrides`` ``{"route", "backend", "percent"?, "reason", "actor"?, "ttl_seconds"?}``
  (``"route": "*"`` for every hot route)
* ``DELETE /_gateway/admin/overrides?route=…&reason=…`` (``route=*`` releases all)
* ``POST /_gateway/admin/reload``: re-read the route table file
* ``GET  /_gateway/admin/shadow``: shadow requests in flight and the last mismatches
* ``GET  /_gateway/admin/audit?limit=50``: the last changes, newest first

``/_gateway/console/`` serves the ops console (static files in ``gateway/console``) that uses this API.
"""

from __future__ import annotations

import hmac
import time
from pathlib import Path
from typing import Any

import httpx
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from flags.model import Override
from flags.overrides import OverrideStoreError
from gateway.errors import envelope
from gateway.proxy import Runtime
from gateway.routes import RouteTableError, load_table


def _error(
    status: int, code: str, message: str, request: Request, fields: dict[str, list[str]] | None = None
) -> JSONResponse:
    return JSONResponse(
        envelope(code, message, request.headers.get("x-request-id", ""), fields), status_code=status
    )


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def _authorized(request: Request) -> bool:
    expected = f"Bearer {_runtime(request).settings.admin_token}"
    return hmac.compare_digest(request.headers.get("authorization", "").encode(), expected.encode())


async def health(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def ready(request: Request) -> Response:
    rt = _runtime(request)
    checks: dict[str, Any] = {"jwks": bool(rt.verifier.jwks.keys), "overrides": rt.flags.overrides.healthy()}
    async with httpx.AsyncClient(timeout=1.0) as client:
        for name, runtime in rt.clusters.items():
            try:
                checks[name] = (await client.get(f"{runtime.cluster.url}/health")).status_code == 200
            except httpx.HTTPError:
                checks[name] = False
    ok = all(checks.values())
    return JSONResponse(
        {"status": "ready" if ok else "degraded", "checks": checks}, status_code=200 if ok else 503
    )


async def metrics(request: Request) -> Response:
    return Response(generate_latest(_runtime(request).metrics.registry), media_type=CONTENT_TYPE_LATEST)


def _route_rows(rt: Runtime) -> list[dict[str, Any]]:
    last = {entry.route: entry.to_json() for entry in rt.flags.overrides.audit(limit=500)}
    rows = []
    for route in rt.table.routes:
        state = rt.flags.describe(route.id)
        rows.append(
            {
                "route": route.id,
                "methods": sorted(route.methods),
                "path": route.path,
                "candidate": route.candidate,
                "backend": state.backend,
                "percent": state.percent,
                "source": state.source,
                "reason": state.reason,
                "override": state.override.to_json() if state.override else None,
                "breaker": rt.clusters[route.candidate].breaker.state,
                "live": rt.live.snapshot(route.id),
                "shadow_match_rate": rt.shadow.match_rate(route.id),
                "last_change": last.get(route.id),
            }
        )
    return rows


async def admin(request: Request) -> Response:
    if not _authorized(request):
        return _error(
            401,
            "unauthenticated",
            "The admin API needs Authorization: Bearer <GATEWAY_ADMIN_TOKEN>.",
            request,
        )
    rt = _runtime(request)
    action = request.path_params.get("action")
    try:
        if action == "routes" and request.method == "GET":
            return JSONResponse({"routes": _route_rows(rt)})
        if action == "audit" and request.method == "GET":
            limit = min(int(request.query_params.get("limit", "50") or 50), 500)
            entries = rt.flags.overrides.audit(limit=limit)
            return JSONResponse({"entries": [entry.to_json() for entry in reversed(entries)]})
        if action == "shadow" and request.method == "GET":
            return JSONResponse({"in_flight": rt.shadow.in_flight, "mismatches": list(rt.shadow.mismatches)})
        if action == "reload" and request.method == "POST":
            rt.table = load_table(rt.settings.routes_file, rt.settings.cluster_urls())
            return JSONResponse({"routes": len(rt.table.routes)})
        if action == "overrides" and request.method == "POST":
            return await _set_override(request, rt)
        if action == "overrides" and request.method == "DELETE":
            return _release(request, rt)
    except RouteTableError as exc:
        return _error(400, "bad_route_table", str(exc), request)
    except OverrideStoreError as exc:
        return _error(503, "store_unavailable", str(exc), request)
    return _error(404, "not_found", f"No admin action {request.method} {request.url.path}.", request)


async def _set_override(request: Request, rt: Runtime) -> Response:
    try:
        data = await request.json()
    except ValueError:
        return _error(400, "bad_request", "The body must be JSON.", request)
    if not isinstance(data, dict):
        return _error(400, "bad_request", "The body must be a JSON object.", request)
    route, backend, reason = data.get("route"), data.get("backend"), data.get("reason")
    fields: dict[str, list[str]] = {}
    routes = [r.id for r in rt.table.routes] if route == "*" else [route]
    if route != "*" and rt.table.by_id(str(route)) is None:
        fields["route"] = ["must be a route id or *"]
    if backend not in ("legacy", "candidate"):
        fields["backend"] = ["must be legacy or candidate"]
    if not isinstance(reason, str) or not reason.strip():
        fields["reason"] = ["is required"]
    percent, ttl = data.get("percent"), data.get("ttl_seconds")
    if percent is not None and (
        type(percent) is not int or not 0 <= percent <= 100 or backend != "candidate"
    ):
        fields["percent"] = ["must be 0..100, with backend candidate"]
    if ttl is not None and (type(ttl) not in (int, float) or ttl <= 0):
        fields["ttl_seconds"] = ["must be a positive number"]
    if fields:
        return _error(400, "validation_error", "The request has invalid fields.", request, fields)
    actor = str(data.get("actor") or "admin-api")
    now = time.time()
    expires_at = now + ttl if ttl else None
    changes: list[tuple[str, Override | None]] = [
        (
            str(r),
            Override.from_json(
                {
                    "route": r,
                    "backend": backend,
                    "percent": percent,
                    "reason": reason,
                    "actor": actor,
                    "at": now,
                    "expires_at": expires_at,
                }
            ),
        )
        for r in routes
    ]
    entries = rt.flags.overrides.apply(changes, actor=actor, reason=str(reason))
    return JSONResponse({"changes": [entry.to_json() for entry in entries]})


def _release(request: Request, rt: Runtime) -> Response:
    route = request.query_params.get("route", "")
    reason = request.query_params.get("reason", "")
    if not reason.strip():
        return _error(400, "validation_error", "A reason is required (?reason=…).", request)
    current = rt.flags.overrides.snapshot()
    routes = list(current) if route == "*" else [route]
    if not routes or any(r not in current for r in routes):
        return _error(404, "not_found", f"No override for {route!r}.", request)
    actor = request.query_params.get("actor") or "admin-api"
    entries = rt.flags.overrides.apply([(r, None) for r in routes], actor=actor, reason=reason)
    return JSONResponse({"changes": [entry.to_json() for entry in entries]})


CONSOLE_DIR = Path(__file__).with_name("console")


def admin_app() -> Starlette:
    return Starlette(
        routes=[
            Mount("/_gateway/console", StaticFiles(directory=CONSOLE_DIR, html=True), name="console"),
            Route("/_gateway/health", health),
            Route("/_gateway/ready", ready),
            Route("/_gateway/metrics", metrics),
            Route("/_gateway/admin/{action}", admin, methods=["GET", "POST", "DELETE"]),
        ]
    )
