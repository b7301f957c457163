"""The identity assertion verifier (identity/assertion.py) on random headers and requests.

Invariants: ``verify`` returns an ``Identity`` or raises ``IdentityError``, nothing else, whatever
the headers hold; what ``sign`` signs, ``verify`` accepts for the same request and returns the same
identity; the same assertion on a request changed in any signed part (method, path, query, body,
deadline) is refused as ``bad_signature``.
"""

from __future__ import annotations

import atheris

import identity

SECRET = "fuzz-identity-secret"  # noqa: S105 - a test secret
NOW = 1_790_000_000
NAMES = (*identity.IDENTITY_HEADERS, identity.HEADER_DEADLINE)


def _text(fdp: atheris.FuzzedDataProvider, limit: int = 40) -> str:
    """What a server hands over (bytes as latin-1), or any text without lone surrogates (a token's sub)."""
    size = fdp.ConsumeIntInRange(0, limit)
    return (
        fdp.ConsumeBytes(size).decode("latin-1")
        if fdp.ConsumeBool()
        else fdp.ConsumeUnicodeNoSurrogates(size)
    )


def _request(fdp: atheris.FuzzedDataProvider) -> dict[str, object]:
    return {
        "method": ("GET", "POST", "PUT", "DELETE", _text(fdp, 8))[fdp.ConsumeIntInRange(0, 4)],
        "path": "/" + _text(fdp),
        "query": _text(fdp),
        "body": fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 64)),
    }


def _verify(headers: dict[str, str], request: dict[str, object]) -> identity.Identity | None:
    try:
        return identity.verify(SECRET, headers, now=NOW, **request)  # type: ignore[arg-type]
    except identity.IdentityError:
        return None


def one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    request = _request(fdp)
    if fdp.ConsumeBool():
        # Arbitrary headers: only an Identity or an IdentityError may come out.
        headers = {name: _text(fdp, 80) for name in NAMES if fdp.ConsumeIntInRange(0, 7)}
        _verify(headers, request)
        return
    user_id, scopes, request_id = _text(fdp), _text(fdp, 20), _text(fdp, 20) or "r"
    deadline = fdp.ConsumeIntInRange(0, 10**15) if fdp.ConsumeBool() else None
    try:
        headers = identity.sign(
            SECRET,
            user_id=user_id,
            scopes=scopes,
            request_id=request_id,
            timestamp=NOW,
            deadline=deadline,
            **request,  # type: ignore[arg-type]
        )
    except identity.IdentityError:
        return  # a field that cannot be signed safely: refused before anything is signed
    verified = _verify(headers, request)
    assert verified is not None, (headers, request)
    assert (verified.user_id, verified.request_id, verified.deadline) == (user_id, request_id, deadline)
    assert verified.scopes == tuple(scopes.split())
    # Any change to a signed part of the request: refused.
    field = ("method", "path", "query", "body")[fdp.ConsumeIntInRange(0, 3)]
    changed = dict(request)
    value = changed[field]
    changed[field] = (
        value + b"x" if isinstance(value, bytes) else f"{value}x" if field != "method" else "PATCH"
    )
    if changed != request:
        assert _verify(headers, changed) is None, (field, headers, changed)
    if deadline is not None:
        moved = {**headers, identity.HEADER_DEADLINE: str(deadline + 1)}
        assert _verify(moved, request) is None, moved
