"""The request path, top to bottom, as one pure ASGI function (no framework objects).

request id → path safety → route match → authenticate → body (size limit) → decide →
forward (breaker, bulkhead) → fallback to legacy when allowed → stream the answer back.
"""

from __future__ import annotations

import hmac
import json
import random
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any

import identity
from flags import EvaluationContext, Flags
from gateway.accesslog import AccessLog
from gateway.auth import Principal, TokenVerifier
from gateway.errors import (
    CircuitOpen,
    GatewayError,
    Overloaded,
    TokenInvalid,
    UpstreamError,
    UpstreamTimeout,
    envelope,
)
from gateway.live import LiveStats
from gateway.metrics import Metrics
from gateway.resilience import STATE_VALUES, Bulkhead, CircuitBreaker, RetryBudget
from gateway.routes import Cluster, Route, RouteTable, unsafe_path
from gateway.settings import GatewaySettings
from gateway.shadow import Shadow, append_capture, capture_line
from gateway.upstream import Pool, UpstreamResponse
from parity.diff import Observation

_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:-]{1,128}")
# Never forwarded from the client: hop-by-hop headers, what we set ourselves, what a client could spoof.
_DROP_REQUEST = frozenset(
    {
        b"host",
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"proxy-authorization",
        b"authorization",
        b"content-length",
        b"x-request-id",
        b"expect",
        b"x-force-backend",
        b"x-gateway-admin-token",
    }
)
_SPOOFABLE_PREFIXES = (b"x-user-", b"x-identity-", b"x-forwarded-")
_DROP_RESPONSE = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"transfer-encoding",
        b"te",
        b"trailer",
        b"upgrade",
        b"proxy-authenticate",
        b"x-request-id",
        b"x-served-by",
        b"server",
        b"date",
    }
)
FALLBACK_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE"})
SAFE_METHODS = frozenset({"GET", "HEAD"})
_BUFFER_LIMIT = 1024 * 1024


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


class Truncated(Exception):
    """The backend failed after the response started: nothing to do but drop the client connection."""


class Reject(Exception):
    def __init__(
        self, status: int, code: str, message: str, headers: list[tuple[bytes, bytes]] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or []


async def _send_error(send: Any, reject: Reject, request_id: bytes) -> None:
    body = json.dumps(
        envelope(reject.code, reject.message, request_id.decode()),
        separators=(",", ":"),
    ).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"x-request-id", request_id),
        (b"x-served-by", b"gateway"),
        *reject.headers,
    ]
    await send({"type": "http.response.start", "status": reject.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _read_body(receive: Any, limit: int, declared: bytes | None) -> bytes:
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        if not declared.isdigit():
            raise Reject(400, "bad_request", "Content-Length is not a number.")
        raise Reject(413, "payload_too_large", "The request body is too large.")
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Reject(400, "bad_request", "The client went away.")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise Reject(413, "payload_too_large", "The request body is too large.")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _authenticate(rt: Runtime, mode: str, authorization: bytes | None) -> Principal | None:
    if mode == "none":
        return None
    if authorization is None:
        if mode == "required":
            raise Reject(
                401,
                "unauthenticated",
                "Authentication required.",
                [(b"www-authenticate", b'Bearer realm="api"')],
            )
        return None
    try:
        return await rt.verifier.verify(authorization.decode("latin-1"))
    except TokenInvalid:
        # A bad token is refused even where signing in is optional: never silently anonymous.
        raise Reject(
            401,
            "unauthenticated",
            "Invalid or expired credentials.",
            [(b"www-authenticate", b'Bearer realm="api"')],
        ) from None


async def _forward(
    rt: Runtime,
    name: str,
    method: str,
    target: bytes,
    headers: list[tuple[bytes, bytes]],
    body: bytes,
    route: Route | None,
) -> UpstreamResponse:
    runtime = rt.clusters[name]
    if not runtime.breaker.allow():
        raise CircuitOpen(name)
    if not runtime.bulkhead.try_enter():
        raise Overloaded(name)
    cluster = runtime.cluster
    try:
        response = await runtime.pool.request(
            method,
            target,
            headers,
            body,
            connect_timeout=(
                route.connect_timeout if route and route.connect_timeout else cluster.connect_timeout
            ),
            read_timeout=(route.read_timeout if route and route.read_timeout else cluster.read_timeout),
        )
    except UpstreamError as exc:
        runtime.breaker.record(False)
        rt.metrics.child(rt.metrics.upstream_errors, name, exc.stage).inc()
        raise
    finally:
        runtime.bulkhead.leave()
        rt.metrics.child(rt.metrics.breaker_state, name).set(STATE_VALUES[runtime.breaker.state])
    runtime.breaker.record(response.status < 500)
    return response


def _upstream_headers(
    scope: dict[str, Any],
    request_id: bytes,
    principal: Principal | None,
    method: str,
    raw_path: bytes,
    secret: str,
) -> list[tuple[bytes, bytes]]:
    forwarded: list[tuple[bytes, bytes]] = []
    for name, value in scope["headers"]:
        if name in _DROP_REQUEST or name.startswith(_SPOOFABLE_PREFIXES):
            continue
        forwarded.append((name, value))
    client = scope.get("client")
    if client:
        forwarded.append((b"x-forwarded-for", client[0].encode()))
    forwarded.append((b"x-forwarded-proto", scope.get("scheme", "http").encode()))
    assertion = identity.sign(
        secret,
        method=method,
        path=raw_path.decode("latin-1"),
        user_id=principal.user_id if principal else "",
        scopes=principal.scopes if principal else "",
        request_id=request_id.decode(),
    )
    forwarded += [(name.encode(), value.encode()) for name, value in assertion.items()]
    return forwarded


def _choose_cluster(
    rt: Runtime,
    route: Route | None,
    principal: Principal | None,
    headers: dict[bytes, bytes],
    scope: dict[str, Any],
) -> tuple[str, bool]:
    """The cluster for this request, and whether QA forced it (``X-Force-Backend`` + admin token)."""
    default = rt.table.default_cluster
    if route is None:
        return default, False
    force = headers.get(b"x-force-backend")
    if force in (b"legacy", b"candidate") and hmac.compare_digest(
        headers.get(b"x-gateway-admin-token", b""), rt.settings.admin_token.encode()
    ):
        rt.metrics.child(rt.metrics.decisions, route.id, force.decode(), "forced").inc()
        return (route.candidate if force == b"candidate" else default), True
    context = EvaluationContext(
        user_id=principal.user_id if principal else "",
        session_id=headers.get(b"x-device-id", b"").decode("latin-1"),
        remote_address=(scope.get("client") or ("",))[0],
        app_version=headers.get(b"x-app-version", b"").decode("latin-1"),
        platform=headers.get(b"x-platform", b"").decode("latin-1"),
    )
    decision = rt.flags.decide(route.id, context)
    rt.metrics.child(rt.metrics.decisions, route.id, decision.backend, decision.reason).inc()
    return (route.candidate if decision.backend == "candidate" else default), False


def _after_response(
    rt: Runtime,
    route: Route,
    request: tuple[str, bytes, list[tuple[bytes, bytes]]],
    primary: Observation | None,
    served_by: str,
    principal: Principal | None,
) -> None:
    """Shadow and capture, after the client has its answer; neither can delay or change it."""
    method, target, _ = request
    sample = random.random()  # noqa: S311 - sampling, not security
    if route.shadow_rate and primary is not None and method in SAFE_METHODS and sample < route.shadow_rate:
        other = route.candidate if served_by == rt.table.default_cluster else rt.table.default_cluster
        work = rt.shadow.compare(
            rt.metrics, route.id, rt.clusters[other].pool, request, primary, served_by, other
        )
        rt.shadow.submit(rt.metrics, route.id, work)
    if route.capture_rate and rt.settings.capture_file and sample < route.capture_rate:
        path, _, query = target.partition(b"?")
        line = capture_line(route.id, method, path, query, principal.user_id if principal else None)
        append_capture(rt.settings.capture_file, line)


async def handle(rt: Runtime, scope: dict[str, Any], receive: Any, send: Any) -> None:
    started = time.perf_counter()
    headers = dict(scope["headers"])
    incoming_id = headers.get(b"x-request-id")
    request_id = (
        incoming_id if incoming_id and _REQUEST_ID.fullmatch(incoming_id) else uuid.uuid4().hex.encode()
    )
    method: str = scope["method"]
    raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
    route: Route | None = None
    served_by, status = "gateway", 500
    rt.metrics.request_started()
    try:
        if unsafe_path(raw_path):
            raise Reject(400, "bad_request", "The request path is not allowed.")
        table = rt.table
        route = table.match(method, scope["path"])
        principal = await _authenticate(
            rt, route.auth if route else table.default_auth, headers.get(b"authorization")
        )
        body = await _read_body(receive, rt.settings.max_body_bytes, headers.get(b"content-length"))
        cluster, forced = _choose_cluster(rt, route, principal, headers, scope)
        try:
            upstream_headers = _upstream_headers(
                scope, request_id, principal, method, raw_path, rt.settings.identity_secret
            )
        except identity.IdentityError:
            raise Reject(400, "bad_request", "The request cannot be forwarded as sent.") from None
        query = scope.get("query_string", b"")
        target = raw_path + b"?" + query if query else raw_path
        rt.retry_budget.earn()
        try:
            response = await _forward(rt, cluster, method, target, upstream_headers, body, route)
        except GatewayError:
            fallback_allowed = (
                route is not None
                and not forced
                and cluster != table.default_cluster
                and method in FALLBACK_METHODS
            )
            if not fallback_allowed or not rt.retry_budget.spend():
                raise
            rt.metrics.child(rt.metrics.fallbacks, route.id).inc()  # type: ignore[union-attr]
            cluster = table.default_cluster
            response = await _forward(rt, cluster, method, target, upstream_headers, body, route)
        served_by, status = cluster, response.status
        shadowing = route is not None and route.shadow_rate > 0 and not forced
        primary = await _relay(response, send, request_id, cluster, keep=shadowing)
        if route is not None and not forced:
            _after_response(rt, route, (method, target, upstream_headers), primary, cluster, principal)
    except Reject as reject:
        status = reject.status
        rt.metrics.child(rt.metrics.rejected, reject.code).inc()
        await _send_error(send, reject, request_id)
    except (CircuitOpen, Overloaded) as exc:
        status = 503
        what = "is overloaded" if isinstance(exc, Overloaded) else "is failing (circuit open)"
        await _send_error(
            send,
            Reject(503, "unavailable", f"The backend {what}; retry shortly.", [(b"retry-after", b"1")]),
            request_id,
        )
    except UpstreamTimeout:
        status = 504
        await _send_error(
            send, Reject(504, "upstream_timeout", "The backend did not answer in time."), request_id
        )
    except UpstreamError:
        status = 502
        await _send_error(send, Reject(502, "bad_gateway", "The backend could not be reached."), request_id)
    finally:
        rt.metrics.request_finished()
        elapsed = time.perf_counter() - started
        route_id = route.id if route else "unmatched"
        rt.metrics.child(rt.metrics.requests, route_id, served_by, f"{status // 100}xx").inc()
        rt.metrics.child(rt.metrics.duration, route_id, served_by).observe(elapsed)
        if route is not None:
            rt.live.record(route_id, served_by, status, elapsed)
        rt.access_log.line(request_id.decode(), method, route_id, served_by, status, elapsed)


async def _relay(
    response: UpstreamResponse, send: Any, request_id: bytes, cluster: str, keep: bool = False
) -> Observation | None:
    """Send the backend's answer on; with ``keep``, return it if it was small enough to hold (for shadow)."""
    headers = [(name, value) for name, value in response.headers if name not in _DROP_RESPONSE]
    headers += [(b"x-request-id", request_id), (b"x-served-by", cluster.encode())]
    length = next((value for name, value in response.headers if name == b"content-length"), None)
    if length is not None and length.isdigit() and int(length) <= _BUFFER_LIMIT:
        body = await response.read()
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        if not keep:
            return None
        kept = {name.decode("latin-1"): value.decode("latin-1") for name, value in response.headers}
        return Observation.of(response.status, kept, body)
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    try:
        async for chunk in response.chunks():
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
    except UpstreamError as exc:
        raise Truncated(str(exc)) from exc
    finally:
        response.release(reusable=False)
    await send({"type": "http.response.body", "body": b""})
    return None
