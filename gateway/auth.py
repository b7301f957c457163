"""Authenticate once: verify the bearer JWT against legacy's JWKS and remember verified tokens.

* JWKS fetched with httpx (off the hot path), refreshed in the background; an unknown
  ``kid`` triggers a refetch at most every ``min_refetch_seconds``.
* Algorithms: RS256 for RSA keys, ES256 for EC keys, nothing else (never ``none``,
  never HS* with a public key); ``exp``, ``iat``, ``sub`` required; ``iss``/``aud``
  checked; 60 s leeway.
* Verified tokens are cached by their raw string until they expire (bounded; oldest
  evicted first), so a repeat request costs a dict lookup, not a signature check.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from typing import Any

import httpx
import jwt

from gateway.errors import TokenInvalid

logger = logging.getLogger("gateway.auth")
MAX_TOKEN_BYTES = 8192
_KID = re.compile(r"[A-Za-z0-9_.-]{1,128}")
_ALGORITHM_FOR_KEY = {"RSA": "RS256", "EC": "ES256"}


@dataclass(frozen=True, kw_only=True, slots=True)
class Principal:
    user_id: str
    scopes: str
    expires_at: float


class Jwks:
    """The signing keys legacy publishes: kid → (key, algorithm)."""

    def __init__(self, url: str, client: httpx.AsyncClient, *, min_refetch_seconds: float = 10.0) -> None:
        self.url = url
        self.client = client
        self.min_refetch_seconds = min_refetch_seconds
        self.keys: dict[str, tuple[Any, str]] = {}
        self.last_fetch = 0.0
        self.last_error: str | None = None

    async def refresh(self) -> bool:
        self.last_fetch = time.monotonic()
        try:
            response = await self.client.get(self.url, timeout=3.0)
            response.raise_for_status()
            keys: dict[str, tuple[Any, str]] = {}
            for entry in response.json().get("keys", []):
                algorithm = _ALGORITHM_FOR_KEY.get(entry.get("kty"))
                kid = entry.get("kid")
                if algorithm is None or not isinstance(kid, str) or entry.get("alg", algorithm) != algorithm:
                    continue
                keys[kid] = (jwt.PyJWK.from_dict(entry, algorithm=algorithm).key, algorithm)
        except (httpx.HTTPError, ValueError, jwt.PyJWKError) as exc:
            self.last_error = str(exc)
            logger.warning(
                "JWKS refresh from %s failed; keeping %d known keys: %s", self.url, len(self.keys), exc
            )
            return False
        self.keys = keys
        self.last_error = None
        return True

    async def key_for(self, kid: str) -> tuple[Any, str] | None:
        found = self.keys.get(kid)
        if found is None and time.monotonic() - self.last_fetch >= self.min_refetch_seconds:
            await self.refresh()
            found = self.keys.get(kid)
        return found


class TokenVerifier:
    def __init__(
        self, jwks: Jwks, *, issuer: str, audience: str, leeway: int = 60, max_cache: int = 100_000
    ) -> None:
        self.jwks = jwks
        self.issuer = issuer
        self.audience = audience
        self.leeway = leeway
        self.max_cache = max_cache
        self._cache: dict[str, Principal] = {}

    async def verify(self, authorization: str) -> Principal:
        """The principal for an ``Authorization`` header value; raises ``TokenInvalid``."""
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise TokenInvalid("malformed")
        cached = self._cache.get(token)
        if cached is not None:
            if cached.expires_at + self.leeway > time.time():
                return cached
            del self._cache[token]
            raise TokenInvalid("expired")
        if len(token) > MAX_TOKEN_BYTES:
            raise TokenInvalid("too_long")
        principal = await self._check(token)
        if len(self._cache) >= self.max_cache:
            self._cache.pop(next(iter(self._cache)))
        self._cache[token] = principal
        return principal

    async def _check(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise TokenInvalid("malformed") from None
        kid, algorithm = header.get("kid"), header.get("alg")
        if not isinstance(kid, str) or not _KID.fullmatch(kid):
            raise TokenInvalid("bad_kid")
        found = await self.jwks.key_for(kid)
        if found is None:
            raise TokenInvalid("unknown_kid")
        key, key_algorithm = found
        if algorithm != key_algorithm:
            raise TokenInvalid("bad_algorithm")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[key_algorithm],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": ["exp", "iat", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise TokenInvalid("expired") from None
        except jwt.InvalidTokenError as exc:
            raise TokenInvalid(type(exc).__name__) from None
        subject = claims["sub"]
        if not isinstance(subject, str) or not subject:
            raise TokenInvalid("bad_subject")
        return Principal(
            user_id=subject, scopes=str(claims.get("scope", "")), expires_at=float(claims["exp"])
        )
