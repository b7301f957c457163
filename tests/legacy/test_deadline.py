"""The gateway's deadline (X-Request-Deadline): a request that reaches the monolith after it is refused
with 503 deadline_exceeded before anything runs (DeadlineMiddleware, first in the chain)."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from django.conf import settings

from legacy_django.common import middleware
from legacy_django.items.models import Item
from legacy_django.reviews.models import Review
from tests.legacy.conftest import assert_error, assertion_headers, user_id

REVIEWS = "/api/v1/reviews"


def _now_ms() -> int:
    return int(time.time() * 1000)


def _unreviewed_item(username: str) -> int:
    reviewed = Review.objects.filter(user_id=user_id(username)).values_list("item_id", flat=True)
    return Item.objects.exclude(id__in=reviewed).order_by("id").values_list("id", flat=True)[0]


def _review(username: str) -> tuple[int, bytes]:
    item = _unreviewed_item(username)
    return item, json.dumps({"item_id": item, "rating": 4, "body": "deadline test"}).encode()


@pytest.fixture
def principals(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every request PrincipalMiddleware authenticated: the step right before the views."""
    seen: list[Any] = []
    resolve = middleware.resolve_principal

    def counting(request: Any) -> Any:
        seen.append(request.path)
        return resolve(request)

    monkeypatch.setattr(middleware, "resolve_principal", counting)
    return seen


def test_the_deadline_check_is_first_in_the_chain():
    assert settings.MIDDLEWARE[0] == "legacy_django.common.middleware.DeadlineMiddleware"


def test_a_signed_write_past_its_deadline_is_a_503_and_writes_nothing(api, principals):
    item, body = _review("demo3")
    headers = assertion_headers(
        "POST", REVIEWS, user=str(user_id("demo3")), body=body, deadline=_now_ms() - 1, request_id="late-1"
    )
    headers["x-request-id"] = "late-1"
    response = api.post(REVIEWS, body, headers=headers)
    error = assert_error(response, 503, "deadline_exceeded")
    assert error["request_id"] == "late-1"
    assert response["Retry-After"] == "1"
    assert principals == []  # nothing after the check ran: no body read, no authentication, no view
    assert not Review.objects.filter(user_id=user_id("demo3"), item_id=item).exists()


def test_a_signed_write_with_a_future_deadline_is_served(api, principals):
    item, body = _review("demo3")
    headers = assertion_headers(
        "POST", REVIEWS, user=str(user_id("demo3")), body=body, deadline=_now_ms() + 60_000
    )
    response = api.post(REVIEWS, body, headers=headers)
    assert response.status_code == 201, response.content
    assert principals == [REVIEWS]
    assert Review.objects.filter(user_id=user_id("demo3"), item_id=item).count() == 1


def test_a_read_past_its_deadline_is_a_503_too(api):
    path = "/api/v1/reviews/items/1"
    headers = assertion_headers("GET", path, user="", scopes="", deadline=_now_ms() - 5_000)
    assert_error(api.get(path, headers=headers), 503, "deadline_exceeded")


def test_an_extended_deadline_breaks_the_signature(api):
    # A client (or anything on the way) that pushes the deadline back makes the assertion invalid:
    # the existing invalid-signature path, a 401 on a protected endpoint, and nothing written.
    item, body = _review("demo3")
    headers = assertion_headers(
        "POST", REVIEWS, user=str(user_id("demo3")), body=body, deadline=_now_ms() + 60_000
    )
    headers["x-request-deadline"] = str(_now_ms() + 3_600_000)
    response = api.post(REVIEWS, body, headers=headers)
    assert_error(response, 401, "unauthenticated")
    assert response.json()["error"]["message"] == "Invalid or expired credentials."
    assert not Review.objects.filter(user_id=user_id("demo3"), item_id=item).exists()


def test_an_unsigned_past_deadline_is_honoured(api):
    # Documented choice (docs/identity.md): a past deadline can only make legacy skip the request that
    # carries it, so it is honoured without checking the signature first (no body read, no HMAC).
    response = api.get("/api/v1/items/1", headers={"x-request-deadline": str(_now_ms() - 1)})
    assert_error(response, 503, "deadline_exceeded")


@pytest.mark.parametrize("value", ["", "soon", "-5", "1.5"])
def test_a_malformed_unsigned_deadline_changes_nothing(api, value):
    response = api.get("/api/v1/items/1", headers={"x-request-deadline": value})
    assert response.status_code == 200, response.content
