"""The monolith as `make run` serves it: gunicorn (gthread) over a real socket, a fresh SQLite file."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from tests.support.servers import legacy_env, legacy_server, manage
from tests.support.signing import signed

SECRET = "integration-identity-secret"


@pytest.fixture(scope="module")
def legacy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    var = tmp_path_factory.mktemp("var")
    env = legacy_env(var, f"sqlite:///{var / 'legacy.sqlite3'}", SECRET)
    for args in (["migrate", "-v0"], ["signing_keys", "ensure"], ["seed", "--scale", "small"]):
        manage(env, *args)
    with legacy_server(env, var / "gunicorn.log") as url:
        parts = urlsplit(url)
        yield parts.hostname or "127.0.0.1", parts.port or 80


def _request(server, method, path, body=None, headers=None):
    connection = http.client.HTTPConnection(*server, timeout=10)
    connection.request(method, path, body=body, headers=headers or {})
    response = connection.getresponse()
    data = response.read()
    connection.close()
    return response, data


def _token(server, username="demo1"):
    body = json.dumps({"username": username, "password": "demo-password"})
    response, data = _request(
        server, "POST", "/api/v1/auth/token", body, {"Content-Type": "application/json"}
    )
    assert response.status == 200, data
    return json.loads(data)["access_token"]


def test_reviews_for_a_seeded_item_with_a_demo_token(legacy):
    headers = {"Authorization": f"Bearer {_token(legacy)}"}
    response, data = _request(legacy, "GET", "/api/v1/reviews/items/1?size=3", headers=headers)
    assert response.status == 200
    assert response.getheader("Content-Length") == str(len(data)), "explicit length, no chunking"
    body = json.loads(data)
    assert body["items"] and all("helpful_by_me" in review for review in body["items"])


def test_head_has_headers_but_no_body(legacy):
    response, data = _request(legacy, "HEAD", "/api/v1/reviews/items/1/summary")
    assert response.status == 200
    assert data == b""


def _assertion(
    path: str, user_id: str, *, method: str = "GET", query: str = "", body: bytes = b""
) -> dict[str, str]:
    target = f"{path}?{query}" if query else path
    return signed(SECRET, method, target, user_id=user_id, scopes="user", body=body, request_id="it-1")


def test_assertion_is_checked_against_the_raw_path(legacy):
    # The request line says /api/v1/users/m%65; Django routes it as /api/v1/users/me.
    raw = "/api/v1/users/m%65"
    response, data = _request(legacy, "GET", raw, headers=_assertion(raw, "2"))
    assert response.status == 200, data
    assert json.loads(data)["username"] == "demo2"
    # Signed over the decoded path instead: not what was sent, so rejected.
    response, data = _request(legacy, "GET", raw, headers=_assertion("/api/v1/users/me", "2"))
    assert response.status == 401
    assert json.loads(data)["error"]["code"] == "unauthenticated"


def test_a_signed_in_write_over_the_wire(legacy):
    headers = {"Authorization": f"Bearer {_token(legacy, 'demo3')}", "Content-Type": "application/json"}
    _, data = _request(legacy, "GET", "/api/v1/reviews/me?size=100", headers=headers)
    reviewed = {review["item_id"] for review in json.loads(data)["items"]}
    item = min(set(range(1, 41)) - reviewed)
    body = json.dumps(
        {"item_id": item, "rating": 5, "body": "한글 리뷰 over HTTP"}, ensure_ascii=False
    ).encode()
    response, data = _request(legacy, "POST", "/api/v1/reviews", body, headers)
    assert response.status == 201, data
    location = response.getheader("Location")
    response, data = _request(legacy, "GET", location, headers=headers)
    assert json.loads(data)["body"] == "한글 리뷰 over HTTP"


def test_assertion_is_checked_against_the_raw_query_and_body_gunicorn_received(legacy):
    # gunicorn hands Django the query string undecoded; the gateway signed it undecoded.
    raw_query = "size=100&page=%31"
    headers = _assertion("/api/v1/reviews/me", "4", query=raw_query)
    response, data = _request(legacy, "GET", f"/api/v1/reviews/me?{raw_query}", headers=headers)
    assert response.status == 200, data
    reviewed = {review["item_id"] for review in json.loads(data)["items"]}
    response, data = _request(legacy, "GET", "/api/v1/reviews/me?size=100&page=1", headers=headers)
    assert response.status == 401, data

    item = min(set(range(1, 41)) - reviewed)
    body = json.dumps(
        {"item_id": item, "rating": 5, "body": "한글 over the wire"}, ensure_ascii=False
    ).encode()
    signed = {
        **_assertion("/api/v1/reviews", "4", method="POST", body=body),
        "Content-Type": "application/json",
    }
    response, data = _request(
        legacy, "POST", "/api/v1/reviews", body.replace(b'"rating": 5', b'"rating": 1'), signed
    )
    assert response.status == 401, data
    response, data = _request(legacy, "POST", "/api/v1/reviews", body, signed)
    assert response.status == 201, data
