"""Authenticate once: verify the bearer JWT against legacy's JWKS and remember verified tokens.

* JWKS fetched with httpx (off the hot path), refreshed in the background every
  ``GATEWAY_JWKS_REFRESH_SECONDS`` (5 s) with ``If-None-Match``, so an unchanged key set costs
  legacy a 304; an unknown ``kid`` triggers a refetch at most every ``min_refetch_seconds``, and
  requests that arrive while a fetch is in flight wait for that one fetch instead of failing.
  That limit counts only the fetches unknown kids caused, not the background ones: right after a
  rotation the first token with the new kid fetches at once instead of waiting for the next poll.
* A failed refresh (network error, non-2xx, garbage, no usable key) keeps the last known keys:
  only a well-formed key set replaces them, so a broken JWKS never logs everybody out.
* Algorithms: RS256 for RSA keys, ES256 for EC keys, nothing else (never ``none``,
  never HS* with a public key); ``exp``, ``iat``, ``sub`` required; ``iss``/``aud``
  checked; 60 s leeway.
* Verified tokens are cached by their raw string until they expire (bounded; oldest
  evicted first), so a repeat request costs two dict lookups, not a signature check. Each entry
  is bound to its key id: it counts only while that key is published, and a refresh that drops
  a key purges its entries, so a retired key stops working at the next refresh.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import jwt

from gateway.errors import TokenInvalid

logger = logging.getLogger("gateway.auth")
MAX_TOKEN_BYTES = 8192
_KID = re.compile(r"[A-Za-z0-9_.-]{1,128}")
_ALGORITHM_FOR_KEY = {"RSA": "RS256", "EC": "ES256"}

Keys = dict[str, tuple[Any, str]]  # kid → (public key, algorithm)


@dataclass(frozen=True, kw_only=True, slots=True)
class Principal:
    user_id: str
    scopes: str
    expires_at: float


class JwksError(Exception):
    """The JWKS answer is not a key set the gateway can use."""


def _key_of(entry: object) -> tuple[str, tuple[Any, str]] | None:
    """``(kid, (key, algorithm))`` for one usable JWK entry, None for anything else."""
    if not isinstance(entry, dict):
        return None
    algorithm = _ALGORITHM_FOR_KEY.get(str(entry.get("kty")))
    kid = entry.get("kid")
    if algorithm is None or not isinstance(kid, str) or not _KID.fullmatch(kid):
        return None
    if entry.get("alg", algorithm) != algorithm:
        return None
    try:
        return kid, (jwt.PyJWK.from_dict(entry, algorithm=algorithm).key, algorithm)
    except Exception:  # PyJWT raises several types for malformed members: skip the entry
        return None


def parse_jwks(document: object) -> Keys:
    """The usable keys of a JWKS document; ``JwksError`` when it has none.

    Malformed entries are skipped; a document without a single usable key is refused as a
    whole: legacy always publishes its active key, so "no keys" means the answer is broken.
    """
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise JwksError("not a JWKS document (no 'keys' list)")
    entries = document["keys"]
    keys = dict(found for found in map(_key_of, entries) if found is not None)
    if not keys:
        raise JwksError(f"no usable key among {len(entries)} entries")
    if len(keys) < len(entries):
        logger.warning("JWKS: skipped %d unusable entries", len(entries) - len(keys))
    return keys


class Jwks:
    """The signing keys legacy publishes: kid → (key, algorithm)."""

    def __init__(
        self,
        url: str,
        client: httpx.AsyncClient,
        *,
        min_refetch_seconds: float = 10.0,
        timeout: float = 3.0,
    ) -> None:
        self.url = url
        self.client = client
        self.min_refetch_seconds = min_refetch_seconds
        self.timeout = timeout
        self.keys: Keys = {}
        self.etag: str | None = None
        self.last_fetch = 0.0  # monotonic time of the last fetch, for any reason
        self.last_unknown_kid_fetch = 0.0  # ... of the last one an unknown kid caused (rate-limited)
        self.last_error: str | None = None
        self._in_flight: asyncio.Task[bool] | None = None
        self._on_dropped: list[Callable[[set[str]], None]] = []

    def on_dropped(self, callback: Callable[[set[str]], None]) -> None:
        """Call ``callback(kids)`` whenever a refresh stops publishing some keys."""
        self._on_dropped.append(callback)

    async def refresh(self) -> bool:
        """Fetch the key set now, or join the fetch already in flight; False if it failed."""
        if self._in_flight is None:
            task = asyncio.create_task(self._fetch())
            task.add_done_callback(self._fetched)
            self._in_flight = task
        # Shielded: a request that gives up (client gone) must not cancel everybody's fetch.
        return await asyncio.shield(self._in_flight)

    def close(self) -> None:
        """Cancel a fetch in flight (shutdown: nobody is left to wait for it)."""
        if self._in_flight is not None:
            self._in_flight.cancel()

    def _fetched(self, task: asyncio.Task[bool]) -> None:
        if self._in_flight is task:
            self._in_flight = None

    async def _fetch(self) -> bool:
        self.last_fetch = time.monotonic()
        # Conditional only while there are keys to keep: without any, ask for the whole set.
        headers = {"If-None-Match": self.etag} if self.etag and self.keys else {}
        try:
            response = await self.client.get(self.url, headers=headers, timeout=self.timeout)
            if response.status_code == 304 and headers:
                self.last_error = None
                return True
            response.raise_for_status()  # also refuses a 304 we did not ask for
            keys = parse_jwks(response.json())
        except Exception as exc:  # whatever went wrong, the last known keys stay
            self.last_error = f"{type(exc).__name__}: {exc}"
            logger.warning(
                "JWKS refresh from %s failed; keeping %d known keys: %s", self.url, len(self.keys), exc
            )
            return False
        dropped = self.keys.keys() - keys.keys()
        self.keys = keys
        self.etag = response.headers.get("etag")
        self.last_error = None
        if dropped:
            logger.warning("JWKS no longer publishes %s: tokens signed by them are refused", sorted(dropped))
            for callback in self._on_dropped:
                callback(dropped)
        return True

    async def key_for(self, kid: str) -> tuple[Any, str] | None:
        found = self.keys.get(kid)
        if found is not None:
            return found
        if self._in_flight is None:
            now = time.monotonic()
            if now - self.last_unknown_kid_fetch < self.min_refetch_seconds:
                return None
            self.last_unknown_kid_fetch = now
        await self.refresh()  # starts a fetch, or joins the one in flight at no cost
        return self.keys.get(kid)


class TokenVerifier:
    def __init__(
        self, jwks: Jwks, *, issuer: str, audience: str, leeway: int = 60, max_cache: int = 100_000
    ) -> None:
        self.jwks = jwks
        self.issuer = issuer
        self.audience = audience
        self.leeway = leeway
        self.max_cache = max_cache
        self._cache: dict[str, tuple[Principal, str]] = {}  # token → (principal, kid)
        jwks.on_dropped(self._forget)

    async def verify(self, authorization: str) -> Principal:
        """The principal for an ``Authorization`` header value; raises ``TokenInvalid``."""
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise TokenInvalid("malformed")
        cached = self._cache.get(token)
        if cached is not None:
            principal, kid = cached
            if kid not in self.jwks.keys:
                # Its key is no longer published: verify again, which refuses it (unknown kid).
                del self._cache[token]
            elif principal.expires_at + self.leeway > time.time():
                return principal
            else:
                del self._cache[token]
                raise TokenInvalid("expired")
        if len(token) > MAX_TOKEN_BYTES:
            raise TokenInvalid("too_long")
        principal, kid = await self._check(token)
        if len(self._cache) >= self.max_cache:
            self._cache.pop(next(iter(self._cache)))
        self._cache[token] = (principal, kid)
        return principal

    def _forget(self, kids: set[str]) -> None:
        """Purge the cached tokens signed by keys the JWKS no longer publishes."""
        stale = [token for token, (_, kid) in self._cache.items() if kid in kids]
        for token in stale:
            del self._cache[token]

    async def _check(self, token: str) -> tuple[Principal, str]:
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
        principal = Principal(
            user_id=subject, scopes=str(claims.get("scope", "")), expires_at=float(claims["exp"])
        )
        return principal, kid
