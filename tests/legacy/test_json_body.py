"""Every JSON endpoint of the monolith refuses hostile bodies (the parser itself: tests/strictjson).

The corpus is tests/support/hostile_bodies.py; tests/contract/test_hostile_bodies.py sends it to
both backends. Here: each JSON endpoint of the monolith, including the legacy-only ones (token,
orders) that the contract tests do not reach.
"""

from __future__ import annotations

import pytest

from legacy_django.commerce.models import Order
from legacy_django.items.models import ItemOption
from legacy_django.reviews.models import Review
from legacy_django.seed import data
from tests.legacy.conftest import assert_error
from tests.support.hostile_bodies import BAD_TEXT, HOSTILE, Hostile

ENDPOINTS = {
    # path, who calls it
    "reviews-create": ("/api/v1/reviews", "demo4"),
    "orders-create": ("/api/v1/orders", "demo4"),
    "auth-token": ("/api/v1/auth/token", None),
}


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("hostile", HOSTILE, ids=[h.name for h in HOSTILE])
def test_every_json_endpoint_answers_400_and_writes_nothing(api, endpoint: str, hostile: Hostile) -> None:
    path, user = ENDPOINTS[endpoint]
    api.token("demo4")  # the token request itself writes nothing either; get it out of the way
    counts = Review.objects.count(), Order.objects.count()
    # CONTENT_TYPE set directly: Django's test client drops the content type of an empty body.
    response = api.client.generic(
        "POST", path, hostile.body, CONTENT_TYPE="application/json", headers=api.headers(user)
    )
    error = assert_error(response, 400, "bad_request")
    assert error["message"] == hostile.message
    assert "fields" not in error
    assert (Review.objects.count(), Order.objects.count()) == counts


def test_a_sane_body_still_works_on_each_endpoint(api) -> None:
    # The same parser on the happy path: what the hostile cases above are measured against.
    assert api.post(
        "/api/v1/reviews", {"item_id": 3, "rating": 4, "body": "좋아요 👍"}, user="demo4"
    ).status_code in {
        201,
        409,
    }
    option = ItemOption.objects.filter(stock__gt=0).first()
    assert option is not None
    order = api.post("/api/v1/orders", {"lines": [{"option_id": option.pk, "quantity": 1}]}, user="demo4")
    assert order.status_code == 201, order.content
    token = api.post("/api/v1/auth/token", {"username": "demo4", "password": data.DEMO_PASSWORD})
    assert token.status_code == 200


def test_the_token_form_refuses_nul(api) -> None:
    # The token endpoint's other body format: NUL cannot be stored or looked up in PostgreSQL either.
    response = api.post(
        "/api/v1/auth/token",
        "username=demo4%00&password=x",
        content_type="application/x-www-form-urlencoded",
    )
    assert assert_error(response, 400, "bad_request")["message"] == BAD_TEXT
