"""The gateway: authenticate once, route each hot endpoint by flag, forward fast, fail safe.

Request path (``proxy.py``, pure ASGI, no framework objects): request id → size and
path checks → route match (``routes.py``) → token check (``auth.py``) → flag decision
(``flags``) → forward through the cluster's upstream client (``upstream.py``) with its
breaker and bulkhead (``resilience.py``) → fallback to legacy for idempotent requests
that failed on the candidate before any response byte.  ``/_gateway/*`` (health,
readiness, metrics, admin API) is a small Starlette app (``admin.py``).

Exceptions::

    GatewayError
        TokenInvalid(reason)        the bearer token is missing, malformed or fails a check
        UpstreamError(stage)        a forward failed at stage connect|request|response_headers|response_body
            UpstreamConnectError    no connection (refused, reset before sending)
            UpstreamTimeout         connect or read timeout
        CircuitOpen                 the cluster's breaker is open
        Overloaded                  the cluster's bulkhead is full
"""
