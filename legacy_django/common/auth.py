"""Who is calling: the gateway's identity assertion, or a Bearer JWT from an old client.

``PrincipalMiddleware`` (in ``middleware.py``) puts a ``Principal`` on every request.
Invalid credentials make the caller anonymous; endpoints that need a user call
``require_user`` and answer 401.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import jwt
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest
from django.utils.encoding import escape_uri_path

import identity
from legacy_django.common.errors import PayloadTooLarge, Unauthenticated
from legacy_django.common.signing_keys import get_key_store

ALGORITHMS = ["RS256"]


@dataclass(frozen=True, kw_only=True, slots=True)
class Principal:
    user_id: int | None
    scopes: tuple[str, ...] = ()
    # none | invalid | identity | jwt: how the caller presented (or failed to present) credentials.
    credentials: str = "none"


ANONYMOUS = Principal(user_id=None)
INVALID = Principal(user_id=None, credentials="invalid")


def issue_access_token(user_id: int, scopes: str) -> tuple[str, int]:
    keyset = get_key_store().current()
    assert keyset.active.private_key is not None
    now = int(time.time())
    ttl = settings.JWT_ACCESS_TTL_SECONDS
    claims = {
        "sub": str(user_id),
        "iat": now,
        "exp": now + ttl,
        "iss": settings.JWT_ISSUER,
        "aud": settings.JWT_AUDIENCE,
        "scope": scopes,
    }
    token = jwt.encode(
        claims, keyset.active.private_key, algorithm="RS256", headers={"kid": keyset.active.kid}
    )
    return token, ttl


def decode_access_token(token: str) -> dict[str, Any]:
    """Check signature (a published key, by ``kid``), expiry, issuer, audience.

    Raises ``jwt.InvalidTokenError``.
    """
    kid = jwt.get_unverified_header(token).get("kid")
    key = get_key_store().current().published.get(kid) if isinstance(kid, str) else None
    if key is None:
        raise jwt.InvalidTokenError("unknown kid")
    claims: dict[str, Any] = jwt.decode(
        token,
        key.public_key,
        algorithms=ALGORITHMS,
        audience=settings.JWT_AUDIENCE,
        issuer=settings.JWT_ISSUER,
        leeway=settings.JWT_LEEWAY_SECONDS,
        options={"require": ["exp", "iat", "iss", "aud", "sub"]},
    )
    return claims


def raw_path(request: HttpRequest) -> str:
    """The path as it was on the request line: what the gateway signed."""
    raw_uri = request.META.get("RAW_URI") or request.META.get("REQUEST_URI")
    if raw_uri:
        return str(raw_uri).split("?", 1)[0]
    return escape_uri_path(request.path)


def raw_query(request: HttpRequest) -> str:
    """The query string as it was on the request line (WSGI passes it undecoded): what the gateway signed."""
    return str(request.META.get("QUERY_STRING", ""))


def _user_id(subject: str) -> int | None:
    return int(subject) if subject.isascii() and subject.isdigit() and len(subject) <= 18 else None


def _from_assertion(request: HttpRequest) -> Principal:
    """Verify the gateway's assertion; it signs the body too, so the exact body Django received is read
    here (Django keeps it: ``request.body``, ``request.POST`` and views read the same bytes later)."""
    try:
        body = request.body
    except RequestDataTooBig:
        # Without the body the signature cannot be checked; the answer is the same 413 a view gives.
        raise PayloadTooLarge("The request body is too large.") from None
    try:
        asserted = identity.verify(
            settings.IDENTITY_SECRET,
            request.headers,
            method=request.method or "GET",
            path=raw_path(request),
            query=raw_query(request),
            body=body,
            accept_v1=settings.IDENTITY_ACCEPT_V1,
        )
    except identity.IdentityError:
        return INVALID
    if not asserted.is_authenticated:
        return Principal(user_id=None, credentials="identity")
    user_id = _user_id(asserted.user_id)
    if user_id is None:
        return INVALID
    return Principal(user_id=user_id, scopes=asserted.scopes, credentials="identity")


def _from_bearer(authorization: str) -> Principal:
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return INVALID
    try:
        claims = decode_access_token(token.strip())
    except jwt.InvalidTokenError:
        return INVALID
    user_id = _user_id(str(claims["sub"]))
    if user_id is None:
        return INVALID
    return Principal(user_id=user_id, scopes=tuple(str(claims.get("scope", "")).split()), credentials="jwt")


def resolve_principal(request: HttpRequest) -> Principal:
    if identity.HEADER_SIGNATURE in request.headers:
        return _from_assertion(request)
    authorization = request.headers.get("Authorization")
    if authorization:
        return _from_bearer(authorization)
    return ANONYMOUS


def principal_of(request: HttpRequest) -> Principal:
    principal: Principal = getattr(request, "principal", ANONYMOUS)
    return principal


def require_user(request: HttpRequest) -> int:
    principal = principal_of(request)
    if principal.user_id is None:
        if principal.credentials == "invalid":
            raise Unauthenticated("Invalid or expired credentials.")
        raise Unauthenticated()
    return principal.user_id
