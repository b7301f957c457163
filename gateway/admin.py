"""``/_gateway/*``: health, readiness, metrics and the admin API (Starlette; off the hot path).

Admin endpoints need ``Authorization: Bearer $GATEWAY_ADMIN_TOKEN``:

* ``GET  /_gateway/admin/routes``: every route with its decision source and share, breaker state
* ``POST /_gateway/admin/overrides`` ``{"route", "backend", "percent"?, "reason", "actor"?, "ttl_seconds"?}``
  (``"route": "*"`` for every hot route)
* ``DELETE /_gateway/admin/overrides?route=…&reason=…`` (``route=*`` releases all)
* ``POST /_gateway/admin/reload``: re-read the route table file (every worker also re-reads it
  within a second of a change)
* ``GET  /_gateway/admin/shadow``: shadow requests in flight and the last mismatches
* ``GET  /_gateway/admin/audit?limit=50``: the last changes, newest first
* ``GET  /_gateway/admin/autopilot``: auto-offload's policy, which worker decides, legacy's shedding,
  each route's verdict now and the autopilot's last moves (gateway/autopilot.py)
* ``GET  /_gateway/admin/timeline``: the whole gateway's last 15 minutes per second (requests,
  errors, p99 per backend; limit and shed per cluster) with every override change as a marker
* ``GET  /_gateway/admin/rollouts``: every rollout (state, percent, step, gate figures, why, history)
  and which worker decides; ``POST`` ``{"action": "start" | "pause" | "resume" | "abort", "route"
  (or "*"), "reason", "actor"?, and for start "steps", "every_seconds", "min_samples"?, …}``
  (gateway/rollout.py, flags/rollout.py)
* ``GET  /_gateway/admin/candidates?since=1h&limit=20``: legacy endpoints ranked by the time legacy
  spends on them, hot routes marked (gateway/candidates.py)

``/_gateway/console/`` serves the ops console (static files in ``gateway/console``) that uses this API.

This app shares the event loop with the proxy path, so nothing here waits on the override store
on the loop: every store call (file or Redis I/O) runs in a worker thread (at most
``STORE_THREADS`` at once) and gets ``STORE_DEADLINE_SECONDS`` to answer, else the caller gets 503
``store_unavailable``. Values are checked by ``flags.model`` before anything is written (400
``validation_error`` with ``fields``); a body over ``MAX_BODY_BYTES`` is 413. Every error,
unknown paths and unexpected exceptions included, is the JSON envelope; every answer carries
``nosniff``, ``X-Frame-Options: DENY`` and ``Referrer-Policy: no-referrer``, the console a strict
Content-Security-Policy, the admin API ``Cache-Control: no-store``.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.to_thread
import httpx
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from flags.model import InvalidOverride, Override, note_problems
from flags.overrides import Change, OverrideConflict, OverrideStoreError, change_rollout, start_rollouts
from flags.rollout import (
    PERSON_CHANGES,
    READ_METHODS,
    InvalidRollout,
    Plan,
    Rollout,
    RolloutStateError,
    route_problems,
)
from gateway.autopilot import status as autopilot_status
from gateway.candidates import since_seconds
from gateway.errors import envelope
from gateway.rollout import status as rollouts_status
from gateway.routes import RouteTableError
from gateway.runtime import Runtime
from gateway.timeline import Timeline, markers

T = TypeVar("T")
# Well under the console's 2 s poll; a healthy Redis or file answers in milliseconds.
STORE_DEADLINE_SECONDS = 1.0
# Threads for store calls, apart from anyio's default pool (static files use that one): a dead
# Redis can hold these, and nothing else.
STORE_THREADS = 4
# An override request is a few hundred bytes; reason and actor are bounded by flags.model.
MAX_BODY_BYTES = 16 * 1024
MAX_AUDIT_LIMIT = 500

CONSOLE_PREFIX = "/_gateway/console"
# The console is console.js and console.css from this origin, fetch() to this origin, nothing
# inline (no inline script, style or handler in index.html), and never framed.
CONSOLE_CSP = (
    "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'; object-src 'none'"
)
# JSON and metrics: nothing to load, nothing to frame.
API_CSP = "default-src 'none'; frame-ancestors 'none'"
_HTTP_CODES = {400: "bad_request", 401: "unauthenticated", 404: "not_found", 405: "method_not_allowed"}
MAX_CANDIDATES = 500


def _security_headers(path: str) -> dict[str, str]:
    headers = {
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "no-referrer",
        "Content-Security-Policy": CONSOLE_CSP if path.startswith(CONSOLE_PREFIX) else API_CSP,
    }
    if path.startswith("/_gateway/admin/"):
        headers["Cache-Control"] = "no-store"  # override state and the audit trail, behind a token
    return headers


class SecurityHeaders:
    """Adds ``_security_headers`` to every answer of the app it wraps (a header already set wins)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = _security_headers(scope["path"])

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in extra.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _error(
    status: int,
    code: str,
    message: str,
    request: Request,
    fields: dict[str, list[str]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(
        envelope(code, message, request.headers.get("x-request-id", ""), fields),
        status_code=status,
        headers=headers,
    )


async def _store(request: Request, call: Callable[[], T], *, writes: bool = False) -> T:
    """One blocking override-store call, in a worker thread, within ``STORE_DEADLINE_SECONDS``.

    Past the deadline the thread is abandoned (the store's own socket timeouts end it soon after)
    and the caller gets ``OverrideStoreError``: a 503, never a stalled event loop.
    """
    limiter: anyio.CapacityLimiter = request.app.state.store_limiter
    with anyio.move_on_after(STORE_DEADLINE_SECONDS):
        return await anyio.to_thread.run_sync(call, abandon_on_cancel=True, limiter=limiter)
    message = f"The override store did not answer within {STORE_DEADLINE_SECONDS:g} s."
    if writes:
        message += " The change may or may not have been applied: check the audit trail once it is back."
    raise OverrideStoreError(message)


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def _authorized(request: Request) -> bool:
    expected = f"Bearer {_runtime(request).settings.admin_token}"
    return hmac.compare_digest(request.headers.get("authorization", "").encode(), expected.encode())


async def health(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def ready(request: Request) -> Response:
    """200 while the gateway can serve: signing keys loaded and legacy (the default cluster, where
    every route can go) answering. A failing candidate or override store is reported (``degraded``)
    but keeps the pod ready: the gateway routes around the first and keeps the last overrides of
    the second, so taking every pod out of service for them would turn a partial outage into a
    full one. Clusters are checked at once, each within half a second (probes time out at 1 s)."""
    rt = _runtime(request)
    names = list(rt.upstreams)
    async with httpx.AsyncClient(timeout=0.5) as client:
        answers = await asyncio.gather(
            *(client.get(f"{rt.upstreams[name].cluster.url}/health") for name in names),
            return_exceptions=True,
        )
    checks: dict[str, bool] = {"jwks": bool(rt.verifier.jwks.keys), "overrides": rt.flags.overrides.healthy()}
    for name, answer in zip(names, answers, strict=True):
        checks[name] = isinstance(answer, httpx.Response) and answer.status_code == 200
    required = checks["jwks"] and checks[rt.table.default_cluster]
    status = "ready" if all(checks.values()) else "degraded" if required else "not_ready"
    return JSONResponse({"status": status, "checks": checks}, status_code=200 if required else 503)


async def metrics(request: Request) -> Response:
    return Response(_runtime(request).metrics.exposition(), media_type=CONTENT_TYPE_LATEST)


def _route_rows(
    rt: Runtime,
    last: Mapping[str, dict[str, Any]] | None = None,
    live: Mapping[str, dict[str, dict[str, float]]] | None = None,
) -> list[dict[str, Any]]:
    """Every route's row; ``last`` (route → its newest audit entry) and ``live`` (every worker's
    traffic, ``LiveStats.snapshot``) are read by the caller off the event loop: nothing here does I/O."""
    last = last or {}
    live = live or {}
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
                "breaker": rt.upstreams[route.candidate].breaker.state,
                "live": live.get(route.id, {}),
                "shadow_match_rate": rt.shadow.match_rate(route.id),
                "auto_offload": route.auto_offload,
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
            trail = await _store(request, lambda: rt.flags.overrides.audit(limit=MAX_AUDIT_LIMIT))
            # The other workers' live files are read and parsed in a thread, not on the event loop.
            live = await asyncio.to_thread(rt.live.snapshot, rt.live.own_figures())
            last = {entry.route: entry.to_json() for entry in trail}
            return JSONResponse({"routes": _route_rows(rt, last, live)})
        if action == "audit" and request.method == "GET":
            limit = _limit(request.query_params.get("limit", "50"))
            if limit is None:
                return _invalid(request, {"limit": [f"must be a whole number from 1 to {MAX_AUDIT_LIMIT}"]})
            entries = await _store(request, lambda: rt.flags.overrides.audit(limit=limit))
            return JSONResponse({"entries": [entry.to_json() for entry in reversed(entries)]})
        if action == "timeline" and request.method == "GET":
            return JSONResponse(await _timeline(request, rt))
        if action == "autopilot" and request.method == "GET":
            trail = await _store(request, lambda: rt.flags.overrides.audit(limit=MAX_AUDIT_LIMIT))
            autopilot = getattr(request.app.state, "autopilot", None)
            return JSONResponse(await autopilot_status(rt, autopilot, trail))
        if action == "rollouts" and request.method == "GET":
            rollouts = await _store(request, rt.flags.overrides.rollouts)
            decider = getattr(request.app.state, "rollouts", None)
            order = [route.id for route in rt.table.routes]
            return JSONResponse(rollouts_status(rollouts, decider, order))
        if action == "rollouts" and request.method == "POST":
            return await _change_rollouts(request, rt)
        if action == "candidates" and request.method == "GET":
            return await _candidates(request, rt)
        if action == "shadow" and request.method == "GET":
            return JSONResponse({"in_flight": rt.shadow.in_flight, "mismatches": list(rt.shadow.mismatches)})
        if action == "reload" and request.method == "POST":
            # This worker now; the others see the file change within a second (app._publish).
            return JSONResponse({"routes": await rt.reload()})
        if action == "overrides" and request.method == "POST":
            return await _set_override(request, rt)
        if action == "overrides" and request.method == "DELETE":
            return await _release(request, rt)
    except RouteTableError as exc:
        return _error(400, "bad_route_table", str(exc), request)
    except (RolloutStateError, OverrideConflict) as exc:
        return _error(409, "conflict", str(exc), request)
    except OverrideStoreError as exc:
        return _error(503, "store_unavailable", str(exc), request)
    return _error(404, "not_found", f"No admin action {request.method} {request.url.path}.", request)


async def _timeline(request: Request, rt: Runtime) -> dict[str, Any]:
    """The charts' series (other workers' files are read in a thread) and the audit trail's changes
    in their window as markers. Without the store the series still come, with ``markers_error``."""
    timeline: Timeline = request.app.state.timeline
    now = time.time()
    # This worker's rings are copied here, on the loop that appends to them; the rest in a thread.
    document = await anyio.to_thread.run_sync(timeline.merged, now, timeline.own(now))
    document["legacy_cluster"] = rt.table.default_cluster  # whose limit and shed the console charts
    since = float(document["start"])
    try:
        entries = await _store(request, lambda: rt.flags.overrides.audit(since=since, limit=MAX_AUDIT_LIMIT))
    except OverrideStoreError as exc:
        document["markers"] = []
        document["markers_error"] = str(exc)
    else:
        document["markers"] = markers(entries, [route.id for route in rt.table.routes])
    return document


def _limit(raw: str) -> int | None:
    """``?limit=`` as the number of entries to return (capped), or None when it is not one."""
    if not raw.isascii() or not raw.isdigit() or int(raw) < 1:
        return None
    return min(int(raw), MAX_AUDIT_LIMIT)


async def _body(request: Request) -> bytes | None:
    """The request body, or None as soon as it is over ``MAX_BODY_BYTES`` (never buffered whole)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        return None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _invalid(request: Request, fields: dict[str, list[str]]) -> Response:
    return _error(400, "validation_error", "The request has invalid fields.", request, fields)


async def _json_object(request: Request) -> dict[str, Any] | Response:
    """The body as a JSON object, or the error answer (413, or 400 when it is not a JSON object)."""
    body = await _body(request)
    if body is None:
        return _error(413, "payload_too_large", f"The body is over {MAX_BODY_BYTES} bytes.", request)
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return _error(400, "bad_request", "The body must be JSON.", request)
    if not isinstance(data, dict):
        return _error(400, "bad_request", "The body must be a JSON object.", request)
    return data


async def _set_override(request: Request, rt: Runtime) -> Response:
    data = await _json_object(request)
    if isinstance(data, Response):
        return data
    route, reason = data.get("route"), data.get("reason")
    actor = "admin-api" if data.get("actor") is None else data["actor"]
    known = [r.id for r in rt.table.routes]
    fields = note_problems(actor, reason)  # also when the table has no route to check them with
    if route != "*" and route not in known:
        fields["route"] = ["must be a route id of the route table, or *"]
    # Every value is checked (flags.model, as flagctl does) before anything is written.
    now = time.time()
    changes: list[Change] = []
    for target in known if route == "*" else [route]:
        try:
            change = Override.create(
                route=target,
                backend=data.get("backend"),
                percent=data.get("percent"),
                reason=reason,
                actor=actor,
                ttl_seconds=data.get("ttl_seconds"),
                now=now,
            )
        except InvalidOverride as exc:
            for name, problems in exc.fields.items():
                fields.setdefault(name, problems)
            break
        changes.append((change.route, change))
    if fields:
        return _invalid(request, fields)
    entries = await _store(
        request, lambda: rt.flags.overrides.apply(changes, actor=actor, reason=str(reason)), writes=True
    )
    return JSONResponse({"changes": [entry.to_json() for entry in entries]})


async def _release(request: Request, rt: Runtime) -> Response:
    route = request.query_params.get("route", "")
    reason = request.query_params.get("reason", "")
    actor = request.query_params.get("actor") or "admin-api"
    fields = note_problems(actor, reason)
    if fields:
        return _invalid(request, fields)
    current = rt.flags.overrides.snapshot()
    routes = list(current) if route == "*" else [route]
    if not routes or any(r not in current for r in routes):
        return _error(404, "not_found", f"No override for {route[:100]!r}.", request)
    entries = await _store(
        request,
        lambda: rt.flags.overrides.apply([(r, None) for r in routes], actor=actor, reason=reason),
        writes=True,
    )
    return JSONResponse({"changes": [entry.to_json() for entry in entries]})


async def _change_rollouts(request: Request, rt: Runtime) -> Response:
    """Start (``route`` or ``*``: every read route, one after another), pause, resume or abort rollouts;
    the same checks and changes as ``flagctl rollout`` (flags.rollout), nothing written on bad input."""
    data = await _json_object(request)
    if isinstance(data, Response):
        return data
    action, route, reason = data.get("action", "start"), data.get("route"), data.get("reason")
    actor = "admin-api" if data.get("actor") is None else data["actor"]
    fields = note_problems(actor, reason)
    known = [entry.id for entry in rt.table.routes]
    readable = [entry.id for entry in rt.table.routes if entry.methods <= READ_METHODS]
    store = rt.flags.overrides
    if action == "start":
        if route != "*":
            fields.update(route_problems(route, known, readable))
        try:
            plan = Plan.create(
                steps=data.get("steps"),
                every_seconds=data.get("every_seconds"),
                min_samples=data.get("min_samples", 200),
                min_parity=data.get("min_parity", 99.9),
                max_error_ratio=data.get("max_error_ratio", 1.0),
                max_p99_ratio=data.get("max_p99_ratio", 1.2),
            )
        except InvalidRollout as exc:
            fields.update(exc.fields)
        if fields:
            return _invalid(request, fields)
        routes = readable if route == "*" else [str(route)]

        def start() -> list[Rollout]:
            return start_rollouts(store, routes, plan, actor=str(actor), reason=str(reason), now=time.time())

        started = await _store(request, start, writes=True)
        return JSONResponse({"rollouts": [rollout.to_json() for rollout in started]})
    if action not in PERSON_CHANGES:
        fields["action"] = ["must be start, pause, resume or abort"]
    elif route != "*" and route not in known:
        fields["route"] = ["must be a route id of the route table, or *"]
    if fields:
        return _invalid(request, fields)
    accepts, change = PERSON_CHANGES[action]

    def carry_out() -> list[Rollout] | None:
        rollouts = store.rollouts()
        targets = [route] if route != "*" else [r for r, x in rollouts.items() if x.state in accepts]
        if any(target not in rollouts for target in targets):
            return None
        now = time.time()
        return [
            change_rollout(store, str(target), lambda r: change(r, str(actor), str(reason), now))
            for target in targets
        ]

    changed = await _store(request, carry_out, writes=True)
    if changed is None:
        return _error(404, "not_found", f"No rollout of {str(route)[:100]!r}.", request)
    return JSONResponse({"rollouts": [rollout.to_json() for rollout in changed]})


async def _candidates(request: Request, rt: Runtime) -> Response:
    """Legacy endpoints ranked by legacy time: this worker's slices copied here, the files in a thread."""
    since = since_seconds(request.query_params.get("since", "1h"))
    limit = request.query_params.get("limit", "20")
    fields: dict[str, list[str]] = {}
    if since is None:
        fields["since"] = ["must be a duration from 1s to 1h, e.g. 15m, or seconds"]
    if not (limit.isascii() and limit.isdigit() and 1 <= int(limit) <= MAX_CANDIDATES):
        fields["limit"] = [f"must be a whole number from 1 to {MAX_CANDIDATES}"]
    if fields or since is None:
        return _invalid(request, fields)
    own = rt.candidates.own()
    summary = await asyncio.to_thread(rt.candidates.summary, since, int(limit), own)
    summary["hot_routes"] = len(rt.table.routes)
    return JSONResponse(summary)


CONSOLE_DIR = Path(__file__).with_name("console")


class ConsoleFiles(StaticFiles):
    """The console's files. A path no file can have (control characters, too long, not decodable)
    is a 400 or 404 like any miss, in the envelope: never an exception out of the file lookup."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        if any(ord(char) < 32 or ord(char) == 127 for char in path):
            raise HTTPException(400, "A console path has no control characters.")
        try:
            return await super().get_response(path, scope)
        except (OSError, ValueError):
            raise HTTPException(404) from None


def _path(request: Request) -> str:
    return request.url.path[:200]


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own refusals (no such path, method not allowed, a bad console path) as envelopes."""
    assert isinstance(exc, HTTPException)
    status = exc.status_code
    message = {
        404: f"Nothing at {_path(request)}.",
        405: f"{request.method} is not allowed on {_path(request)}.",
    }.get(status, exc.detail)
    return _error(status, _HTTP_CODES.get(status, "error"), message, request, headers=exc.headers)


async def _internal_error(request: Request, exc: Exception) -> Response:
    """Anything unexpected: the envelope, never a stack trace (the gateway's log has that)."""
    return _error(
        500,
        "internal_error",
        "The gateway failed to answer this admin request; its log has the details.",
        request,
        headers=_security_headers(request.url.path),  # this answer bypasses SecurityHeaders
    )


def admin_app() -> Starlette:
    app = Starlette(
        routes=[
            Mount(CONSOLE_PREFIX, ConsoleFiles(directory=CONSOLE_DIR, html=True), name="console"),
            Route("/_gateway/health", health),
            Route("/_gateway/ready", ready),
            Route("/_gateway/metrics", metrics),
            Route("/_gateway/admin/{action}", admin, methods=["GET", "POST", "DELETE"]),
        ],
        middleware=[Middleware(SecurityHeaders)],
        exception_handlers={HTTPException: _http_error, Exception: _internal_error},
    )
    app.state.store_limiter = anyio.CapacityLimiter(STORE_THREADS)
    return app
