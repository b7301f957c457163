"""The JWKS client and the token cache in ``gateway/auth.py`` against a mocked JWKS (respx): what a
500, a timeout, garbage, a dropped key, an added key and a slow answer do to verification."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import jwt
import pytest
import respx
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from gateway.auth import Jwks, Principal, TokenVerifier
from gateway.errors import TokenInvalid

URL = "http://legacy.test/.well-known/jwks.json"
ISSUER, AUDIENCE = "shop-legacy", "shop-api"
KEYS = {kid: rsa.generate_private_key(public_exponent=65537, key_size=2048) for kid in ("a", "b", "c")}


def _jwk(kid: str) -> dict[str, Any]:
    public = json.loads(RSAAlgorithm.to_jwk(KEYS[kid].public_key()))
    return {**public, "kid": kid, "alg": "RS256", "use": "sig"}


def _jwks(*kids: str, etag: str | None = None) -> httpx.Response:
    headers = {"ETag": etag} if etag else {}
    return httpx.Response(200, json={"keys": [_jwk(kid) for kid in kids]}, headers=headers)


def _bearer(kid: str, sub: str = "1") -> str:
    now = int(time.time())
    claims = {"sub": sub, "iat": now, "exp": now + 300, "iss": ISSUER, "aud": AUDIENCE, "scope": "user"}
    return "Bearer " + jwt.encode(claims, KEYS[kid], algorithm="RS256", headers={"kid": kid})


def _run(scenario: Callable[[httpx.AsyncClient], Awaitable[None]]) -> None:
    async def main() -> None:
        async with httpx.AsyncClient() as client:
            await scenario(client)

    asyncio.run(main())


def _verifier(client: httpx.AsyncClient) -> TokenVerifier:
    return TokenVerifier(Jwks(URL, client), issuer=ISSUER, audience=AUDIENCE)


async def _refused(verifier: TokenVerifier, authorization: str) -> str:
    with pytest.raises(TokenInvalid) as caught:
        await verifier.verify(authorization)
    return str(caught.value)


# --- a failing JWKS keeps the last known keys ---------------------------------------------------------


@pytest.mark.parametrize(
    "failure",
    [
        httpx.Response(500, text="Internal Server Error"),
        httpx.Response(503, json={"error": {"code": "unavailable"}}),
        httpx.Response(404, text="not here"),
        httpx.ReadTimeout("timed out"),
        httpx.ConnectTimeout("timed out"),
        httpx.ConnectError("connection refused"),
    ],
    ids=["500", "503", "404", "read timeout", "connect timeout", "refused"],
)
@respx.mock
def test_a_failing_refresh_keeps_the_keys_and_tokens_keep_working(failure: object):
    route = respx.get(URL).mock(side_effect=[_jwks("a", "b"), failure])

    async def scenario(client: httpx.AsyncClient) -> None:
        verifier = _verifier(client)
        assert await verifier.jwks.refresh()
        cached = _bearer("a")
        await verifier.verify(cached)
        assert await verifier.jwks.refresh() is False
        assert set(verifier.jwks.keys) == {"a", "b"}
        assert verifier.jwks.last_error
        assert (await verifier.verify(cached)).user_id == "1"
        assert (await verifier.verify(_bearer("b", sub="2"))).user_id == "2"

    _run(scenario)
    assert route.call_count == 2


GARBAGE = {
    "html": httpx.Response(200, text="<html>maintenance</html>", headers={"Content-Type": "text/html"}),
    "empty body": httpx.Response(200, content=b""),
    "truncated JSON": httpx.Response(200, content=b'{"keys": [{"kty": "RSA", '),
    "a list": httpx.Response(200, json=[_jwk("a")]),
    "a string": httpx.Response(200, json="keys"),
    "keys not a list": httpx.Response(200, json={"keys": "a"}),
    "no keys member": httpx.Response(200, json={"kids": ["a"]}),
    "entries not objects": httpx.Response(200, json={"keys": [1, "a", None, []]}),
    "no keys at all": httpx.Response(200, json={"keys": []}),
    "numbers for n and e": httpx.Response(200, json={"keys": [{"kty": "RSA", "kid": "x", "n": 5, "e": 3}]}),
    "bad base64": httpx.Response(200, json={"keys": [{"kty": "RSA", "kid": "x", "n": "!!", "e": "??"}]}),
    "a symmetric key": httpx.Response(200, json={"keys": [{"kty": "oct", "kid": "x", "k": "c2VjcmV0"}]}),
    "kid not a string": httpx.Response(200, json={"keys": [{**_jwk("c"), "kid": 7}]}),
    "kid with path characters": httpx.Response(200, json={"keys": [{**_jwk("c"), "kid": "../../x"}]}),
    "RSA key claiming HS256": httpx.Response(200, json={"keys": [{**_jwk("c"), "alg": "HS256"}]}),
}


@pytest.mark.parametrize("answer", list(GARBAGE.values()), ids=list(GARBAGE))
@respx.mock
def test_garbage_from_the_jwks_is_a_failed_refresh_not_a_crash_nor_an_empty_key_set(answer: httpx.Response):
    respx.get(URL).mock(side_effect=[_jwks("a"), answer])

    async def scenario(client: httpx.AsyncClient) -> None:
        verifier = _verifier(client)
        assert await verifier.jwks.refresh()
        token = _bearer("a")
        await verifier.verify(token)
        assert await verifier.jwks.refresh() is False
        assert set(verifier.jwks.keys) == {"a"}
        assert (await verifier.verify(token)).user_id == "1"
        assert (await verifier.verify(_bearer("a", sub="2"))).user_id == "2", "a fresh token, same key"

    _run(scenario)


@respx.mock
def test_a_malformed_entry_is_skipped_and_the_good_keys_are_used():
    broken = {"kty": "RSA", "kid": "broken", "n": 5, "e": "AQAB"}
    respx.get(URL).mock(return_value=httpx.Response(200, json={"keys": [broken, _jwk("b")]}))

    async def scenario(client: httpx.AsyncClient) -> None:
        verifier = _verifier(client)
        assert await verifier.jwks.refresh()
        assert set(verifier.jwks.keys) == {"b"}
        assert (await verifier.verify(_bearer("b"))).user_id == "1"

    _run(scenario)


@respx.mock
def test_starting_against_a_broken_jwks_refuses_tokens_without_crashing():
    respx.get(URL).mock(return_value=httpx.Response(200, json=["not", "a", "jwks"]))

    async def scenario(client: httpx.AsyncClient) -> None:
        verifier = _verifier(client)
        assert await verifier.jwks.refresh() is False
        assert verifier.jwks.keys == {}
        assert await _refused(verifier, _bearer("a")) == "unknown_kid"

    _run(scenario)


# --- rotation: keys added and dropped ----------------------------------------------------------------


@respx.mock
def test_a_dropped_key_refuses_its_cached_tokens_after_the_refresh():
    respx.get(URL).mock(side_effect=[_jwks("a", "b"), _jwks("b")])

    async def scenario(client: httpx.AsyncClient) -> None:
        verifier = _verifier(client)
        await verifier.jwks.refresh()
        retired, current = _bearer("a"), _bearer("b")
        assert (await verifier.verify(retired)).user_id == "1"
        assert (await verifier.verify(current)).user_id == "1"
        assert await verifier.verify(retired) is await verifier.verify(retired), "served from the cache"

        assert await verifier.jwks.refresh()  # legacy retired "a"
        assert await _refused(verifier, retired) == "unknown_kid"
        assert retired.removeprefix("Bearer ") not in verifier._cache, "purged when its key went away"
        assert (await verifier.verify(current)).user_id == "1"

    _run(scenario)


@respx.mock
def test_a_new_kid_triggers_one_rate_limited_refetch():
    route = respx.get(URL).mock(side_effect=[_jwks("a"), _jwks("a", "b"), _jwks("a", "b", "c")])

    async def scenario(client: httpx.AsyncClient) -> None:
        verifier = _verifier(client)
        jwks = verifier.jwks
        await jwks.refresh()  # the background refresh does not count against the limit
        assert (await verifier.verify(_bearer("b"))).user_id == "1"
        assert route.call_count == 2
        # Legacy rotates again at once: within the interval an unknown kid costs no fetch.
        assert await _refused(verifier, _bearer("c")) == "unknown_kid"
        assert await _refused(verifier, _bearer("c", sub="2")) == "unknown_kid"
        assert route.call_count == 2
        jwks.last_unknown_kid_fetch -= jwks.min_refetch_seconds  # as if that much time had passed
        assert (await verifier.verify(_bearer("c"))).user_id == "1"
        assert route.call_count == 3

    _run(scenario)


def _held(gate: asyncio.Event, started: asyncio.Event, answer: httpx.Response) -> Any:
    """A respx side effect that answers only once ``gate`` is set (``started`` says it is waiting)."""

    async def effect(request: httpx.Request) -> httpx.Response:
        started.set()
        await gate.wait()
        return answer

    return effect


async def _until_started(started: asyncio.Event, task: asyncio.Task[Any]) -> None:
    """Wait until the held fetch has begun; fail (never hang) if ``task`` ends without starting it."""
    waiter = asyncio.create_task(started.wait())
    await asyncio.wait({waiter, task}, return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    assert started.is_set(), f"no JWKS fetch was started: {task}"


@respx.mock
def test_requests_with_a_new_kid_during_the_refetch_wait_for_it_instead_of_failing():
    async def scenario(client: httpx.AsyncClient) -> None:
        gate, started = asyncio.Event(), asyncio.Event()
        route = respx.get(URL).mock(side_effect=[_jwks("a"), _held(gate, started, _jwks("a", "b"))])
        verifier = _verifier(client)
        await verifier.jwks.refresh()
        first = asyncio.create_task(verifier.verify(_bearer("b", sub="1")))
        await _until_started(started, first)
        second = asyncio.create_task(verifier.verify(_bearer("b", sub="2")))
        await asyncio.sleep(0)  # let the second request reach the JWKS lookup
        assert not second.done()
        gate.set()
        assert [(await first).user_id, (await second).user_id] == ["1", "2"]
        assert route.call_count == 2, "one refetch for both"

    _run(scenario)


@respx.mock
def test_known_keys_and_cached_tokens_keep_flowing_while_the_jwks_is_slow():
    async def scenario(client: httpx.AsyncClient) -> None:
        gate, started = asyncio.Event(), asyncio.Event()
        respx.get(URL).mock(side_effect=[_jwks("a", "b"), _held(gate, started, _jwks("a", "b"))])
        verifier = _verifier(client)
        await verifier.jwks.refresh()
        cached = _bearer("a")
        await verifier.verify(cached)

        refresh = asyncio.create_task(verifier.jwks.refresh())
        await _until_started(started, refresh)
        principals: list[Principal] = [
            await verifier.verify(cached),
            await verifier.verify(_bearer("b", sub="2")),  # not cached, key known: a signature check
        ]
        assert [p.user_id for p in principals] == ["1", "2"]
        assert not refresh.done(), "the refresh is still waiting on the JWKS"
        gate.set()
        assert await refresh

    _run(scenario)


# --- conditional refresh ---------------------------------------------------------------------------


@respx.mock
def test_not_modified_keeps_the_keys_and_a_changed_jwks_replaces_them():
    published = ["a", "b"]
    seen: list[tuple[str | None, int]] = []

    def legacy(request: httpx.Request) -> httpx.Response:
        """Like the monolith's view: the ETag names the key set, a matching If-None-Match is a 304."""
        etag = '"' + "+".join(published) + '"'
        answer = (
            httpx.Response(304, headers={"ETag": etag})
            if request.headers.get("If-None-Match") == etag
            else _jwks(*published, etag=etag)
        )
        seen.append((request.headers.get("If-None-Match"), answer.status_code))
        return answer

    respx.get(URL).mock(side_effect=legacy)

    async def scenario(client: httpx.AsyncClient) -> None:
        verifier = _verifier(client)
        token = _bearer("a")
        assert await verifier.jwks.refresh()
        await verifier.verify(token)
        assert await verifier.jwks.refresh(), "304 is a successful refresh"
        assert set(verifier.jwks.keys) == {"a", "b"}
        assert verifier.jwks.last_error is None
        assert (await verifier.verify(token)).user_id == "1"
        published.remove("a")
        assert await verifier.jwks.refresh()
        assert set(verifier.jwks.keys) == {"b"}
        assert await _refused(verifier, token) == "unknown_kid"

    _run(scenario)
    assert seen[:3] == [(None, 200), ('"a+b"', 304), ('"a+b"', 200)]


@respx.mock
def test_a_304_to_a_request_without_an_etag_is_a_failure():
    respx.get(URL).mock(side_effect=[_jwks("a"), httpx.Response(304)])

    async def scenario(client: httpx.AsyncClient) -> None:
        verifier = _verifier(client)
        assert await verifier.jwks.refresh()  # no ETag: the next fetch is unconditional
        assert await verifier.jwks.refresh() is False
        assert set(verifier.jwks.keys) == {"a"}

    _run(scenario)
