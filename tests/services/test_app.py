"""Service behaviour the corpus does not reach: health, request ids, bearer tokens, crashes."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from starlette.testclient import TestClient

from services.common.settings import load_settings
from services.reviews import queries
from services.reviews.app import create_app
from tests.support.servers import seeded_copies
from tests.support.signing import signed

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


def _signed(method: str, target: str, user_id: str = "2", body: bytes = b"") -> dict[str, str]:
    """The gateway's headers for ``target`` (path and raw query) and ``body``."""
    return signed(SECRET, method, target, user_id=user_id, body=body)


def _json(data: dict[str, object]) -> bytes:
    return json.dumps(data).encode()


def test_a_valid_assertion_identifies_the_user(client):
    response = client.get("/api/v1/reviews/me?size=1", headers=_signed("GET", "/api/v1/reviews/me?size=1"))
    assert response.status_code == 200
    assert response.json()["items"][0]["author"]["id"] == 2


def test_an_assertion_for_a_missing_user_cannot_write(client):
    body = _json({"item_id": 1, "rating": 5, "body": "x"})
    headers = {**_signed("POST", "/api/v1/reviews", "999999", body), "content-type": "application/json"}
    response = client.post("/api/v1/reviews", content=body, headers=headers)
    assert response.status_code == 401
    assert response.json()["error"]["message"] == "Invalid or expired credentials."


# --- v2 binds the query and the body: a captured assertion replayed with others is refused ---------

MINE = "/api/v1/reviews/me"
PUBLIC = "/api/v1/reviews/items/1"


@pytest.mark.parametrize(
    "replayed",
    [f"{MINE}?size=100", f"{MINE}?size=1&page=2", MINE, f"{MINE}?size=%31"],
    ids=["other-value", "extra-parameter", "no-query", "same-value-other-encoding"],
)
def test_an_assertion_replayed_with_another_query_is_401(client, replayed):
    response = client.get(replayed, headers=_signed("GET", f"{MINE}?size=1"))
    assert response.status_code == 401
    assert response.json()["error"]["message"] == "Invalid or expired credentials."


def test_an_assertion_replayed_with_another_query_on_a_public_endpoint_is_anonymous(client):
    headers = _signed("GET", f"{PUBLIC}?size=3", user_id="1")
    signed = client.get(f"{PUBLIC}?size=3", headers=headers).json()["items"]
    assert signed and all("helpful_by_me" in review for review in signed)
    replayed = client.get(f"{PUBLIC}?size=50", headers=headers)
    assert replayed.status_code == 200
    assert all("helpful_by_me" not in review for review in replayed.json()["items"])


def test_an_assertion_replayed_with_another_body_is_401_and_writes_nothing(client):
    mine = client.get(f"{MINE}?size=100", headers=_signed("GET", f"{MINE}?size=100", user_id="3")).json()
    item = min(set(range(1, 41)) - {review["item_id"] for review in mine["items"]})
    signed_body = _json({"item_id": item, "rating": 5, "body": "signed"})
    headers = {**_signed("POST", "/api/v1/reviews", "3", signed_body), "content-type": "application/json"}
    replayed = client.post(
        "/api/v1/reviews", content=_json({"item_id": item, "rating": 1, "body": "x"}), headers=headers
    )
    assert replayed.status_code == 401
    after = client.get(f"{MINE}?size=100", headers=_signed("GET", f"{MINE}?size=100", user_id="3")).json()
    assert item not in {review["item_id"] for review in after["items"]}
    # The body the assertion was signed for still works: the handler reads the bytes verified first.
    response = client.post("/api/v1/reviews", content=signed_body, headers=headers)
    assert response.status_code == 201, response.text
    assert (response.json()["item_id"], response.json()["rating"], response.json()["body"]) == (
        item,
        5,
        "signed",
    )


@contextmanager
def _settings(client: TestClient, **changes: object) -> Iterator[None]:
    # Not monkeypatch: it would restore app.state's attribute by deleting it.
    original = client.app.state.settings
    client.app.state.settings = dataclasses.replace(original, **changes)
    try:
        yield
    finally:
        client.app.state.settings = original


def test_a_signed_body_too_large_to_verify_is_a_413_envelope(client):
    body = _json({"item_id": 1, "rating": 5, "body": "x" * 100})
    headers = {**_signed("POST", "/api/v1/reviews", "3", body), "content-type": "application/json"}
    with _settings(client, max_body_bytes=64):
        response = client.post("/api/v1/reviews", content=body, headers=headers)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


def test_a_v1_assertion_is_refused_unless_identity_accept_v1(client):
    headers = _signed("GET", MINE)
    message = f"v1\n{headers['x-identity-timestamp']}\nGET\n{MINE}\n2\nuser\nt-1"
    digest = hmac.new(SECRET.encode(), message.encode(), hashlib.sha256).hexdigest()
    headers["x-identity-signature"] = f"v1={digest}"
    assert client.get(MINE, headers=headers).status_code == 401
    with _settings(client, identity_accept_v1=True):
        response = client.get(MINE, headers=headers)
    assert response.status_code == 200
    assert response.json()["items"][0]["author"]["id"] == 2


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
