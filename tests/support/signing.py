"""The identity assertion the gateway adds, signed by hand for tests that call a backend directly."""

from __future__ import annotations

from typing import Any

import identity


def signed(
    secret: str,
    method: str,
    target: str,
    *,
    user_id: str = "",
    scopes: str | None = None,
    body: bytes = b"",
    request_id: str = "t-1",
    **kwargs: Any,
) -> dict[str, str]:
    """The headers for ``target`` (path and raw query) and ``body``; ``scopes`` defaults to ``user``
    for a signed-in user and none for an anonymous one; ``kwargs`` go to ``identity.sign``."""
    path, _, query = target.partition("?")
    return identity.sign(
        secret,
        method=method,
        path=path,
        query=query,
        body=body,
        user_id=user_id,
        scopes=("user" if user_id else "") if scopes is None else scopes,
        request_id=request_id,
        **kwargs,
    )
