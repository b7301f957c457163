"""Which headers cross the gateway, in each direction (pure functions over ASGI header lists).

Request: hop-by-hop headers (RFC 9110 §7.6.1), including every header the client names in
``Connection``, never go upstream; neither do the client's credentials (the identity assertion
replaces them), what the gateway sets itself, and anything a client could use to spoof who or
where it is (``X-User-*``, ``X-Identity-*``, ``X-Forwarded-*``, ``Forwarded``, ``X-Real-IP``,
and the URL-override headers some frameworks honour), nor ``X-Request-Deadline``: the gateway
sets and signs the deadline itself, and a client must not be able to extend it.
Response: hop-by-hop headers and what the gateway sets itself are replaced.
"""

from __future__ import annotations

from collections.abc import Iterable

Headers = list[tuple[bytes, bytes]]

HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"proxy-authenticate",
        b"proxy-authorization",
    }
)
DROP_REQUEST = HOP_BY_HOP | {
    b"host",
    b"authorization",
    b"content-length",
    b"x-request-id",
    b"x-request-deadline",
    b"expect",
    b"x-force-backend",
    b"x-gateway-admin-token",
    b"forwarded",
    b"x-real-ip",
    b"x-original-url",
    b"x-rewrite-url",
    b"x-original-host",
    b"x-http-method-override",
    b"x-http-method",
    b"x-method-override",
}
SPOOFABLE_PREFIXES = (b"x-user-", b"x-identity-", b"x-forwarded-")
DROP_RESPONSE = HOP_BY_HOP | {b"x-request-id", b"x-served-by", b"server", b"date"}


def connection_tokens(headers: Iterable[tuple[bytes, bytes]]) -> frozenset[bytes]:
    """Header names listed in ``Connection`` (hop-by-hop by declaration), lower-case."""
    names: set[bytes] = set()
    for name, value in headers:
        if name == b"connection":
            names.update(token.strip().lower() for token in value.split(b",") if token.strip())
    return frozenset(names)


def request_headers(headers: list[tuple[bytes, bytes]]) -> Headers:
    """The client's headers that may go upstream."""
    kept: Headers = []
    has_connection = False
    for name, value in headers:
        if name in DROP_REQUEST or name.startswith(SPOOFABLE_PREFIXES):
            has_connection = has_connection or name == b"connection"
            continue
        kept.append((name, value))
    if has_connection:  # rare: a second pass only for clients that name hop-by-hop headers
        named = connection_tokens(headers)
        kept = [(name, value) for name, value in kept if name not in named]
    return kept


def response_headers(headers: Iterable[tuple[bytes, bytes]]) -> Headers:
    """The backend's headers that may go to the client."""
    headers = list(headers)
    named = connection_tokens(headers)
    return [(name, value) for name, value in headers if name not in DROP_RESPONSE and name not in named]
