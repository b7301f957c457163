"""The gateway: authenticate once, route each hot endpoint by flag, forward fast, fail safe.

Request path (``proxy.py``, pure ASGI, no framework objects): request id → size and path
checks → route match (``routes.py``) → token check (``auth.py``) → flag decision (``flags``;
a candidate with an open breaker is routed to legacy) → forward through the cluster's
upstream client (``upstream.py``) with its breaker and bulkhead (``resilience.py``) →
fallback to legacy for idempotent requests that failed on the candidate before any
response byte. What the request path reads is a ``Runtime`` (``runtime.py``); which
headers cross is ``headers.py``. ``/_gateway/*`` (health, readiness, metrics, admin API)
is a small Starlette app (``admin.py``). Before either, the HTTP server's protocol
(``server.py``) enforces request-head limits, read and idle timeouts and a connection cap.
Off the request path, two deciders share one lease-and-loop pattern (``decider.py``):
auto-offload (``autopilot.py``) and parity-gated rollouts (``rollout.py``); ``candidates.py``
counts what legacy spends per path template (the next routes to strangle).

Exceptions::

    GatewayError
        TokenInvalid(reason)        the bearer token is missing, malformed or fails a check
        UpstreamError(stage)        a forward failed at stage connect|request|response_headers|response_body
            UpstreamConnectError    no connection (refused, reset before sending)
            UpstreamTimeout         connect or read timeout
        CircuitOpen                 the cluster's breaker is open
        Overloaded                  the cluster's bulkhead is full
        Truncated                   the backend failed after the response started (connection dropped)
    Reject(status, code)            the gateway refuses the request itself (401, 405, 413, …)

``Reject`` is not a ``GatewayError``: it is the client's mistake, never a backend's, and never
triggers a fallback. Each reaches the client as the JSON envelope (``errors.envelope``), except
``Truncated``: the status line is already sent, so the connection is dropped.
"""
