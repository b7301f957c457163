"""Which headers cross the gateway (gateway/headers.py), on random header lists.

Invariants: nothing the gateway must drop goes upstream (hop-by-hop, credentials, spoofable
``X-User-*``/``X-Identity-*``/``X-Forwarded-*``, ``X-Request-Deadline``, any header ``Connection``
names); nothing else is dropped, and order is kept. Likewise for the response direction.
"""

from __future__ import annotations

import atheris

from gateway.headers import (
    DROP_REQUEST,
    DROP_RESPONSE,
    SPOOFABLE_PREFIXES,
    connection_tokens,
    request_headers,
    response_headers,
)

# Names the harness draws from, so most inputs hit the interesting ones.
KNOWN = [
    *sorted(DROP_REQUEST | DROP_RESPONSE),
    b"x-user-id",
    b"x-identity-signature",
    b"x-forwarded-for",
    b"content-type",
    b"accept",
    b"idempotency-key",
    b"x-device-id",
]


def _headers(fdp: atheris.FuzzedDataProvider) -> list[tuple[bytes, bytes]]:
    headers = []
    for _ in range(fdp.ConsumeIntInRange(0, 12)):
        if fdp.ConsumeBool():
            name = KNOWN[fdp.ConsumeIntInRange(0, len(KNOWN) - 1)]
        else:
            name = fdp.ConsumeBytes(fdp.ConsumeIntInRange(1, 20)).lower()
        if name == b"connection" or fdp.ConsumeBool():
            # A Connection value naming other headers, with odd spacing and case.
            picks = [
                KNOWN[fdp.ConsumeIntInRange(0, len(KNOWN) - 1)] for _ in range(fdp.ConsumeIntInRange(0, 3))
            ]
            value = b" , ".join(p.upper() if fdp.ConsumeBool() else p for p in picks) + fdp.ConsumeBytes(4)
        else:
            value = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 30))
        headers.append((name, value))
    return headers


def _subsequence(kept: list[tuple[bytes, bytes]], given: list[tuple[bytes, bytes]]) -> bool:
    remaining = iter(given)
    return all(any(header == other for other in remaining) for header in kept)


def one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    given = _headers(fdp)
    named = connection_tokens(given)
    upstream = request_headers(given)
    for name, _ in upstream:
        assert name not in DROP_REQUEST and not name.startswith(SPOOFABLE_PREFIXES), name
        assert name not in named, name
    expected = [
        (n, v)
        for n, v in given
        if n not in DROP_REQUEST and not n.startswith(SPOOFABLE_PREFIXES) and n not in named
    ]
    assert upstream == expected, (given, upstream)
    downstream = response_headers(given)
    assert downstream == [(n, v) for n, v in given if n not in DROP_RESPONSE and n not in named], given
    assert _subsequence(upstream, given) and _subsequence(downstream, given)
