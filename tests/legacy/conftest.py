"""Fixtures for the monolith: a database seeded once per session (small scale), API clients, tokens.

The database is SQLite unless DATABASE_URL names another; ``make test`` runs this
suite once on SQLite and once on the PostgreSQL at 127.0.0.1:5432.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

import pytest
from django.conf import settings
from django.test import Client

from legacy_django.common.signing_keys import get_key_store
from legacy_django.seed import data
from legacy_django.seed.management.commands.seed import seed
from tests.support.signing import signed

DEMO = [username for username, _ in data.DEMO_USERS]


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup: None, django_db_blocker: Any) -> Iterator[None]:
    with django_db_blocker.unblock():
        seed(data.SCALES["small"])
    yield


@pytest.fixture(autouse=True)
def _db(db: None) -> None:
    """Every legacy test runs in a transaction that is rolled back afterwards."""


@pytest.fixture(autouse=True, scope="session")
def _keys_dir(tmp_path_factory: pytest.TempPathFactory) -> None:
    settings.JWT_KEYS_DIR = tmp_path_factory.mktemp("keys")
    get_key_store.cache_clear()


class Api:
    """A thin test client speaking JSON, optionally as a signed-in demo user."""

    def __init__(self) -> None:
        self.client = Client()
        self._tokens: dict[str, str] = {}

    def token(self, username: str) -> str:
        if username not in self._tokens:
            response = self.post("/api/v1/auth/token", {"username": username, "password": data.DEMO_PASSWORD})
            assert response.status_code == 200, response.content
            self._tokens[username] = response.json()["access_token"]
        return self._tokens[username]

    def headers(self, user: str | None, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = dict(extra or {})
        if user is not None:
            headers["Authorization"] = f"Bearer {self.token(user)}"
        return headers

    def get(self, path: str, user: str | None = None, **kwargs: Any) -> Any:
        return self.client.get(path, headers=self.headers(user, kwargs.pop("headers", None)), **kwargs)

    def post(self, path: str, body: Any = None, user: str | None = None, **kwargs: Any) -> Any:
        content_type = kwargs.pop("content_type", "application/json")
        payload = (
            json.dumps(body)
            if content_type == "application/json" and not isinstance(body, str | bytes)
            else body
        )
        return self.client.generic(
            "POST",
            path,
            payload or b"",
            content_type=content_type,
            headers=self.headers(user, kwargs.pop("headers", None)),
        )

    def request(self, method: str, path: str, user: str | None = None, **kwargs: Any) -> Any:
        return self.client.generic(
            method, path, headers=self.headers(user, kwargs.pop("headers", None)), **kwargs
        )


@pytest.fixture
def api() -> Api:
    return Api()


def user_id(username: str) -> int:
    from legacy_django.users.models import User

    return User.objects.get(username=username).pk


def assertion_headers(
    method: str, target: str, user: str = "", scopes: str = "user", *, body: bytes = b"", **kwargs: Any
) -> dict[str, str]:
    """Headers the gateway would add for ``target`` (path and raw query) and ``body`` (none for a
    GET), signed with the monolith's secret."""
    return signed(
        settings.IDENTITY_SECRET,
        method,
        target,
        user_id=user,
        scopes=scopes,
        body=body,
        request_id=kwargs.pop("request_id", "req-test-1"),
        **kwargs,
    )


def assert_error(response: Any, status: int, code: str, extra: Iterable[str] = ()) -> dict[str, Any]:
    """The one envelope: status, JSON content type, code, message, request id echoed in the header
    (plus the ``extra`` keys an endpoint documents, such as a sold_out's ``option_ids``)."""
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    error = response.json()["error"]
    assert error["code"] == code
    assert isinstance(error["message"], str) and error["message"]
    assert error["request_id"] == response["X-Request-Id"]
    assert set(error) <= {"code", "message", "request_id", "fields", *extra}
    assert set(error) >= set(extra)
    return error
