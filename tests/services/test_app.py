"""Service behaviour the corpus does not reach: health, request ids, bearer tokens, crashes."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

import identity
from services.common.settings import load_settings
from services.reviews import queries
from services.reviews.app import create_app
from tests.support.servers import seeded_copies

SECRET = "service-test-secret"


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    work = tmp_path_factory.mktemp("service")
    with seeded_copies(work, ("service",), None, SECRET) as urls:
        settings = dataclasses.replace(
            load_settings("reviews", {}), database_url=urls["service"], identity_secret=SECRET
        )
        with TestClient(create_app(settings), raise_server_exceptions=False) as test_client:
            yield test_client


def test_health(client):
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_request_id_is_echoed_or_generated(client):
    assert client.get("/health", headers={"X-Request-Id": "abc-1"}).headers["x-request-id"] == "abc-1"
    generated = client.get("/health", headers={"X-Request-Id": "bad id!"}).headers["x-request-id"]
    assert len(generated) == 32 and generated != "bad id!"


def test_a_bearer_token_is_not_an_identity(client):
    response = client.get("/api/v1/reviews/me", headers={"Authorization": "Bearer anything"})
    assert response.status_code == 401
    assert response.json()["error"]["message"] == "Authentication required."


def test_a_valid_assertion_identifies_the_user(client):
    headers = identity.sign(
        SECRET, method="GET", path="/api/v1/reviews/me", user_id="2", scopes="user", request_id="t-1"
    )
    response = client.get("/api/v1/reviews/me?size=1", headers=headers)
    assert response.status_code == 200
    assert response.json()["items"][0]["author"]["id"] == 2


def test_an_assertion_for_a_missing_user_cannot_write(client):
    path = "/api/v1/reviews"
    headers = identity.sign(
        SECRET, method="POST", path=path, user_id="999999", scopes="user", request_id="t-2"
    )
    response = client.post(path, json={"item_id": 1, "rating": 5, "body": "x"}, headers=headers)
    assert response.status_code == 401
    assert response.json()["error"]["message"] == "Invalid or expired credentials."


def test_an_unexpected_failure_is_a_500_envelope_without_details(client, monkeypatch):
    async def boom(*args, **kwargs):
        raise RuntimeError("secret database detail")

    monkeypatch.setattr(queries, "review_summary", boom)
    response = client.get("/api/v1/reviews/items/1/summary", headers={"X-Request-Id": "crash-1"})
    assert response.status_code == 500
    assert response.json() == {
        "error": {"code": "internal_error", "message": "Internal server error.", "request_id": "crash-1"}
    }
    assert response.headers["x-request-id"] == "crash-1"


def test_unknown_paths_and_trailing_slashes_are_404_envelopes(client):
    for path in ("/nope", "/api/v1/reviews/items/1/"):
        response = client.get(path)
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"
