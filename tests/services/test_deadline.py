"""The gateway's deadline (X-Request-Deadline) in the services: a request that arrives after it gets
503 deadline_exceeded before its body is read, its assertion verified or its handler run."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.routing import Route
from starlette.testclient import TestClient

import identity
from services.common.settings import load_settings
from services.reviews.app import create_app
from tests.support.servers import seeded_copies
from tests.support.signing import signed

SECRET = "service-deadline-secret"
REVIEWS = "/api/v1/reviews"
MINE = "/api/v1/reviews/me"


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    work = tmp_path_factory.mktemp("service-deadline")
    with seeded_copies(work, ("service",), None, SECRET) as urls:
        settings = dataclasses.replace(
            load_settings("reviews", {}), database_url=urls["service"], identity_secret=SECRET
        )
        with TestClient(create_app(settings), raise_server_exceptions=False) as test_client:
            yield test_client


@pytest.fixture
def creates(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every run of the POST /api/v1/reviews handler."""
    route = next(r for r in client.app.routes if isinstance(r, Route) and r.path == REVIEWS)  # type: ignore[attr-defined]
    handlers = route.endpoint.handlers
    create = handlers["POST"]
    runs: list[str] = []

    async def counting(request: Any) -> Any:
        runs.append(request.url.path)
        return await create(request)

    monkeypatch.setitem(handlers, "POST", counting)
    return runs


def _now_ms() -> int:
    return int(time.time() * 1000)


def _signed(method: str, target: str, user_id: str, body: bytes = b"", **kwargs: Any) -> dict[str, str]:
    return signed(
        SECRET,
        method,
        target,
        user_id=user_id,
        body=body,
        request_id=kwargs.pop("request_id", "d-1"),
        **kwargs,
    )


def _mine(client: TestClient, user_id: str) -> set[int]:
    target = f"{MINE}?size=100"
    response = client.get(target, headers=_signed("GET", target, user_id))
    assert response.status_code == 200, response.text
    return {review["item_id"] for review in response.json()["items"]}


def _review(client: TestClient, user_id: str) -> tuple[int, bytes]:
    item = min(set(range(1, 41)) - _mine(client, user_id))
    return item, json.dumps({"item_id": item, "rating": 4, "body": "deadline test"}).encode()


def _post(client: TestClient, body: bytes, headers: dict[str, str]) -> Any:
    return client.post(REVIEWS, content=body, headers={**headers, "content-type": "application/json"})


def test_a_signed_write_past_its_deadline_is_a_503_and_writes_nothing(client, creates):
    item, body = _review(client, "4")
    headers = {**_signed("POST", REVIEWS, "4", body, deadline=_now_ms() - 1), "x-request-id": "late-1"}
    response = _post(client, body, headers)
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert response.headers["x-request-id"] == "late-1"
    assert response.json() == {
        "error": {
            "code": "deadline_exceeded",
            "message": "The request waited too long to be served and was not processed; retry shortly.",
            "request_id": "late-1",
        }
    }
    assert creates == []
    assert item not in _mine(client, "4")


def test_a_signed_write_with_a_future_deadline_is_served(client, creates):
    item, body = _review(client, "4")
    response = _post(client, body, _signed("POST", REVIEWS, "4", body, deadline=_now_ms() + 60_000))
    assert response.status_code == 201, response.text
    assert creates == [REVIEWS]
    assert item in _mine(client, "4")


def test_an_extended_deadline_breaks_the_signature(client, creates):
    item, body = _review(client, "4")
    headers = _signed("POST", REVIEWS, "4", body, deadline=_now_ms() + 60_000)
    headers[identity.HEADER_DEADLINE] = str(_now_ms() + 3_600_000)
    response = _post(client, body, headers)
    assert response.status_code == 401
    assert response.json()["error"]["message"] == "Invalid or expired credentials."
    assert item not in _mine(client, "4")


def test_an_unsigned_past_deadline_is_honoured_and_a_malformed_one_ignored(client):
    path = "/api/v1/reviews/items/1/summary"
    late = client.get(path, headers={"x-request-deadline": str(_now_ms() - 1)})
    assert late.status_code == 503
    assert late.json()["error"]["code"] == "deadline_exceeded"
    assert client.get(path, headers={"x-request-deadline": "soon"}).status_code == 200
