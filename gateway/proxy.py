"""The request path, top to bottom, as one pure ASGI function (no framework objects).

request id → path safety → route match → authenticate → body (size limit) → decide →
forward (breaker, bulkhead) → fallback to legacy when allowed → stream the answer back.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import json
import random
import re
import time
from typing import Any

import identity
from flags import EvaluationContext
from gateway.auth import Principal
from gateway.candidates import fold
from gateway.errors import (
    CircuitOpen,
    GatewayError,
    Overloaded,
    Reject,
    TokenInvalid,
    Truncated,
    UpstreamConnectError,
    UpstreamError,
    UpstreamTimeout,
    envelope,
)
from gateway.headers import request_headers, response_headers
from gateway.limiter import AdaptiveLimit
from gateway.routes import Route, unsafe_path
from gateway.runtime import Routing, Runtime, Upstream
from gateway.shadow import append_capture, capture_line
from gateway.upstream import UpstreamResponse
from parity.diff import Observation

_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:-]{1,128}")
FALLBACK_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE"})
SAFE_METHODS = frozenset({"GET", "HEAD"})
# What an unmatched request (served by legacy) may use; anything else (TRACE, CONNECT, made-up
# methods) is refused by the gateway with 405, never forwarded.
DEFAULT_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_ALLOW_DEFAULT = ", ".join(sorted(DEFAULT_METHODS)).encode()
_BUFFER_LIMIT = 1024 * 1024


def _new_request_id() -> bytes:
    """32 random hex digits, like a uuid4's: unique, not secret (no system call, no UUID object)."""
    return b"%032x" % random.getrandbits(128)


def _failed_status(error: GatewayError) -> int:
    """The status the client would have had for a forward that failed this way."""
    if isinstance(error, UpstreamTimeout):
        return 504
    return 503 if isinstance(error, Overloaded | CircuitOpen) else 502


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
    upstream: Upstream,
    method: str,
    target: bytes,
    headers: list[tuple[bytes, bytes]],
    body: bytes,
    route: Route | None,
) -> UpstreamResponse:
    """Send the request to one cluster through its bulkhead, adaptive limit and breaker.

    A failure before the response headers is the breaker's verdict here; a response's verdict
    is given by the caller once its body has been relayed (a body can still fail). The limiter
    gets the time to the response headers as its sample.
    """
    if not upstream.bulkhead.try_enter():
        raise Overloaded(upstream.cluster.name)
    cluster, limiter = upstream.cluster, upstream.limiter
    if limiter is not None and not limiter.try_acquire():
        try:
            admitted = await _queue(rt, upstream, limiter, route)
        except BaseException:
            upstream.bulkhead.leave()
            raise
        if not admitted:
            upstream.bulkhead.leave()
            raise Overloaded(cluster.name)
    sample: float | None = None  # time to the response headers, for the limiter
    dropped = False
    started = time.perf_counter()
    try:
        if not upstream.breaker.allow():
            raise CircuitOpen(cluster.name)
        try:
            response = await upstream.pool.request(
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
            if isinstance(exc, UpstreamTimeout):  # the backend is too slow: congestion
                sample, dropped = time.perf_counter() - started, True
            # Only a refused or reset connect counts as a connect failure: a backend that closes
            # the connection after reading a request may have been crashed by that request.
            connect_failure = isinstance(exc, UpstreamConnectError) and exc.stage == "connect"
            upstream.breaker.record(False, connect_failure=connect_failure)
            rt.metrics.child(rt.metrics.upstream_errors, cluster.name, exc.stage).inc()
            raise
        except BaseException:
            upstream.breaker.abandon()  # cancelled: no verdict, and the probe slot must not leak
            raise
        # Overload answers only: an endpoint's ordinary 500s say nothing about legacy's capacity.
        sample, dropped = time.perf_counter() - started, response.status in (502, 503, 504)
        return response
    finally:
        upstream.bulkhead.leave()
        if limiter is not None:
            limiter.release(sample, dropped=dropped)


async def _queue(rt: Runtime, upstream: Upstream, limiter: AdaptiveLimit, route: Route | None) -> bool:
    """Wait briefly for the limiter; on False the request is shed (counted per cluster and route)."""
    if await limiter.acquire():
        return True
    name = upstream.cluster.name
    rt.metrics.child(rt.metrics.shed, name, route.id if route else "unmatched").inc()
    rt.live.record_shed(name)
    return False


def _upstream_headers(
    scope: dict[str, Any],
    request_id: bytes,
    principal: Principal | None,
    method: str,
    raw_path: bytes,
    query: bytes,
    body: bytes,
    secret: str,
    route: Route | None,
    upstream: Upstream,
) -> list[tuple[bytes, bytes]]:
    forwarded = request_headers(scope["headers"])
    client = scope.get("client")
    if client:
        forwarded.append((b"x-forwarded-for", client[0].encode()))
    forwarded.append((b"x-forwarded-proto", scope.get("scheme", "http").encode()))
    # The deadline: the latest moment the gateway may still be waiting for the response head (a pool
    # slot or connect, then the read timeout), in Unix ms. Signed, so nobody on the way can extend it;
    # a backend that only gets to the request later skips it (docs/identity.md).
    cluster = upstream.cluster
    wait = (route.connect_timeout if route and route.connect_timeout else cluster.connect_timeout) + (
        route.read_timeout if route and route.read_timeout else cluster.read_timeout
    )
    # v2 binds the raw query and the exact body forwarded, so a captured assertion fits no other request.
    forwarded += identity.sign_headers(
        secret,
        method=method,
        path=raw_path.decode("latin-1"),
        query=query.decode("latin-1"),
        body=body,
        user_id=principal.user_id if principal else "",
        scopes=principal.scopes if principal else "",
        request_id=request_id.decode(),
        deadline=int((time.time() + wait) * 1000),
    )
    return forwarded


def _choose_backend(
    rt: Runtime,
    routing: Routing,
    route: Route | None,
    principal: Principal | None,
    headers: dict[bytes, bytes],
    scope: dict[str, Any],
) -> tuple[str, bool]:
    """``legacy`` or ``candidate`` for this request, and whether QA forced it (``X-Force-Backend``
    with the admin token). A candidate whose breaker is open is not chosen: its requests go to
    legacy as a routing decision (reason ``circuit_open``), not as a retry."""
    if route is None:
        return "legacy", False
    force = headers.get(b"x-force-backend")
    if force in (b"legacy", b"candidate") and hmac.compare_digest(
        headers.get(b"x-gateway-admin-token", b""), rt.settings.admin_token.encode()
    ):
        rt.metrics.child(rt.metrics.decisions, route.id, force.decode(), "forced").inc()
        return force.decode(), True
    context = EvaluationContext(
        user_id=principal.user_id if principal else "",
        session_id=headers.get(b"x-device-id", b"").decode("latin-1"),
        remote_address=(scope.get("client") or ("",))[0],
        app_version=headers.get(b"x-app-version", b"").decode("latin-1"),
        platform=headers.get(b"x-platform", b"").decode("latin-1"),
    )
    decision = rt.flags.decide(route.id, context)
    backend, reason = decision.backend, decision.reason
    if backend == "candidate" and routing.upstreams[route.candidate].breaker.is_open():
        backend, reason = "legacy", "circuit_open"
    rt.metrics.child(rt.metrics.decisions, route.id, backend, reason).inc()
    return backend, False


def _after_response(
    rt: Runtime,
    routing: Routing,
    route: Route,
    request: tuple[str, bytes, list[tuple[bytes, bytes]]],
    primary: Observation | None,
    cluster: str,
    principal: Principal | None,
    sample: float,
) -> None:
    """Shadow (``primary``: kept only when the request was sampled for it) and capture, after the
    client has its answer; neither can delay or change it."""
    method, target, _ = request
    if primary is not None:
        default = routing.table.default_cluster
        other = routing.upstreams[route.candidate if cluster == default else default]
        # Never load a backend its breaker or its limiter protects: a shadow takes a free slot of
        # the other side's limit or is not sent (it never queues, and never sheds a real request).
        limiter = other.limiter
        if not other.breaker.is_open() and (limiter is None or limiter.try_acquire()):
            work = rt.shadow.compare(
                rt.metrics, route.id, other.pool, request, primary, cluster, other.cluster.name
            )
            on_done = functools.partial(limiter.release, None) if limiter is not None else None
            rt.shadow.submit(rt.metrics, route.id, work, on_done)
    if route.capture_rate and rt.settings.capture_file and sample < route.capture_rate:
        path, _, query = target.partition(b"?")
        line = capture_line(route.id, method, path, query, principal.user_id if principal else None)
        append_capture(rt.settings.capture_file, line)


async def handle(rt: Runtime, scope: dict[str, Any], receive: Any, send: Any) -> None:
    started = time.perf_counter()
    headers = dict(scope["headers"])
    incoming_id = headers.get(b"x-request-id")
    request_id = incoming_id if incoming_id and _REQUEST_ID.fullmatch(incoming_id) else _new_request_id()
    method: str = scope["method"]
    raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
    route: Route | None = None
    # backend: the side chosen (legacy | candidate; none before a choice); cluster: who answered.
    backend, cluster, status = "none", "gateway", 500
    signed_in = False
    rt.metrics.request_started()
    try:
        if unsafe_path(raw_path):
            raise Reject(400, "bad_request", "The request path is not allowed.")
        routing = rt.routing  # one table and its upstreams for the whole request (before any await)
        table = routing.table
        route = table.match(method, scope["path"])
        if route is None and method not in DEFAULT_METHODS:
            raise Reject(405, "method_not_allowed", f"{method} is not allowed.", [(b"allow", _ALLOW_DEFAULT)])
        principal = await _authenticate(
            rt, route.auth if route else table.default_auth, headers.get(b"authorization")
        )
        signed_in = principal is not None
        body = await _read_body(receive, rt.settings.max_body_bytes, headers.get(b"content-length"))
        backend, forced = _choose_backend(rt, routing, route, principal, headers, scope)
        cluster = route.candidate if route is not None and backend == "candidate" else table.default_cluster
        query: bytes = scope.get("query_string", b"")
        # Signed per upstream: the deadline in the assertion follows that upstream's timeouts.
        secret = rt.settings.identity_secret
        headers_for = functools.partial(
            _upstream_headers, scope, request_id, principal, method, raw_path, query, body, secret, route
        )
        upstream = routing.upstreams[cluster]
        try:
            upstream_headers = headers_for(upstream)
        except identity.IdentityError:
            raise Reject(400, "bad_request", "The request cannot be forwarded as sent.") from None
        target = raw_path + b"?" + query if query else raw_path
        rt.retry_budget.earn()
        try:
            response = await _forward(rt, upstream, method, target, upstream_headers, body, route)
        except GatewayError as failure:
            fallback_allowed = (
                route is not None and not forced and backend == "candidate" and method in FALLBACK_METHODS
            )
            if not fallback_allowed or not rt.retry_budget.spend():
                raise
            rt.metrics.child(rt.metrics.fallbacks, route.id).inc()  # type: ignore[union-attr]
            # The candidate failed this request even though legacy answers it: a candidate error in
            # the live figures (a rollout's error gate), as it would be without the fallback.
            rt.live.record(route.id, "candidate", _failed_status(failure), time.perf_counter() - started)  # type: ignore[union-attr]
            backend, cluster = "legacy", table.default_cluster
            upstream = routing.upstreams[cluster]
            upstream_headers = headers_for(upstream)  # a fresh deadline for legacy
            response = await _forward(rt, upstream, method, target, upstream_headers, body, route)
        status = response.status
        # One draw per request: shadowed (the table's rate, or more while a rollout runs) and captured.
        sample = random.random()  # noqa: S311 - sampling, not security
        shadowing = (
            route is not None and not forced and method in SAFE_METHODS and sample < rt.shadow_rate(route)
        )
        primary = await _relay_with_verdict(rt, upstream, response, send, request_id, shadowing)
        if route is not None and not forced:
            _after_response(
                rt, routing, route, (method, target, upstream_headers), primary, cluster, principal, sample
            )
    except Reject as reject:
        status = reject.status
        rt.metrics.child(rt.metrics.rejected, reject.code).inc()
        await _send_error(send, reject, request_id)
    except Overloaded:
        status = 503
        message = "The backend is overloaded; retry shortly."
        await _send_error(send, Reject(503, "overloaded", message, [(b"retry-after", b"1")]), request_id)
    except CircuitOpen:
        status = 503
        message = "The backend is failing (circuit open); retry shortly."
        await _send_error(send, Reject(503, "unavailable", message, [(b"retry-after", b"1")]), request_id)
    except UpstreamTimeout:
        status = 504
        await _send_error(
            send, Reject(504, "upstream_timeout", "The backend did not answer in time."), request_id
        )
    except UpstreamError:
        status = 502
        await _send_error(send, Reject(502, "bad_gateway", "The backend could not be reached."), request_id)
    except Truncated:
        # The client already has the status line: all we can do is end without completing the
        # response, which makes the server drop the connection (the client sees a short body).
        status = 502
    except asyncio.CancelledError:
        # The client closed its connection before the answer was complete (gateway/server.py cancels
        # the exchange): nginx's 499 "client closed request", whatever the backend would have said.
        status = 499
        raise
    finally:
        rt.metrics.request_finished()
        elapsed = time.perf_counter() - started
        route_id = route.id if route else "unmatched"
        rt.metrics.child(rt.metrics.requests, route_id, backend, cluster, f"{status // 100}xx").inc()
        rt.metrics.child(rt.metrics.duration, route_id, backend, cluster).observe(elapsed)
        if route is not None and backend != "none":
            rt.live.record(route_id, backend, status, elapsed)
        if backend == "legacy":  # what legacy spends per endpoint: the next routes to strangle
            template = route.path if route is not None else fold(scope["path"])
            rt.candidates.record(method, template, route.id if route else None, status, elapsed, signed_in)
        else:
            rt.candidates.count()
        rt.access_log.line(request_id.decode(), method, route_id, backend, cluster, status, elapsed)


async def _relay_with_verdict(
    rt: Runtime,
    upstream: Upstream,
    response: UpstreamResponse,
    send: Any,
    request_id: bytes,
    keep: bool,
) -> Observation | None:
    """Relay the answer, then give the breaker its verdict: a 5xx or a body that failed is a failure."""
    breaker, name = upstream.breaker, upstream.cluster.name
    try:
        primary = await _relay(response, send, request_id, name, keep=keep)
    except (UpstreamError, Truncated):
        breaker.record(False)
        rt.metrics.child(rt.metrics.upstream_errors, name, "response_body").inc()
        raise
    except BaseException:
        breaker.abandon()  # cancelled (the client left, or shutdown): no verdict on the backend
        raise
    breaker.record(response.status < 500)
    return primary


async def _relay(
    response: UpstreamResponse, send: Any, request_id: bytes, cluster: str, keep: bool = False
) -> Observation | None:
    """Send the backend's answer on; with ``keep``, return it if it was small enough to hold (for shadow)."""
    headers = response_headers(response.headers)
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
    try:
        # Inside the try: a client that leaves while the server waits to write (server.py cancels
        # the request) must not take the upstream connection and its pool slot with it.
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        async for chunk in response.chunks():
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
    except UpstreamError as exc:
        raise Truncated(str(exc)) from exc
    finally:
        response.release(reusable=False)
    await send({"type": "http.response.body", "body": b""})
    return None
