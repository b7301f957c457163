"""A retired signing key stops working at the gateway within seconds: a real monolith and a real
gateway (one worker, JWKS polled every second), the operator's own commands for rotate and retire."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass

import httpx
import jwt
import pytest

from tests.gateway.conftest import SECRET, _gateway
from tests.support.servers import free_port, legacy_env, legacy_server, manage, seeded_copies
from tests.support.waiting import eventually


@dataclass(frozen=True, kw_only=True, slots=True)
class Pair:
    legacy_env: dict[str, str]  # what the monolith runs with: its management commands need the same
    gateway: str


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    work = tmp_path_factory.mktemp("key-retirement")
    with ExitStack() as stack, seeded_copies(work, ("legacy",), None, SECRET) as urls:
        env = legacy_env(work, urls["legacy"], SECRET)
        legacy = stack.enter_context(legacy_server(env, work / "legacy.log"))
        nowhere = f"http://127.0.0.1:{free_port()}"  # every route flag is off: the services are not called
        gateway, _ = _gateway(
            stack,
            work,
            "gw-retirement",
            {
                "LEGACY_URL": legacy,
                "REVIEWS_URL": nowhere,
                "RECOMMENDATIONS_URL": nowhere,
                "GATEWAY_JWKS_REFRESH_SECONDS": "1",
            },
            workers=1,
        )
        yield Pair(legacy_env=env, gateway=gateway)


def _token(pair: Pair) -> str:
    response = httpx.post(
        f"{pair.gateway}/api/v1/auth/token", json={"username": "demo1", "password": "demo-password"}
    )
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def _my_reviews(pair: Pair, token: str) -> httpx.Response:
    return httpx.get(f"{pair.gateway}/api/v1/reviews/me", headers={"Authorization": f"Bearer {token}"})


def test_a_retired_key_is_refused_at_the_gateway_within_seconds(pair: Pair):
    old = _token(pair)
    old_kid = jwt.get_unverified_header(old)["kid"]
    assert _my_reviews(pair, old).status_code == 200  # verified once, now cached by the gateway

    manage(pair.legacy_env, "signing_keys", "rotate")
    new = _token(pair)
    assert jwt.get_unverified_header(new)["kid"] != old_kid
    assert _my_reviews(pair, new).status_code == 200, "a new kid is fetched on first sight"
    assert _my_reviews(pair, old).status_code == 200, "rotating keeps the old key published"

    manage(pair.legacy_env, "signing_keys", "retire", old_kid)
    assert eventually(lambda: _my_reviews(pair, old).status_code == 401, timeout=10), (
        "the gateway still accepts a token signed by a retired key"
    )
    refused = _my_reviews(pair, old)
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "unauthenticated"
    assert _my_reviews(pair, new).status_code == 200
