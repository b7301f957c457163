"""Legacy-only endpoints (items, views, search, orders, health) and the envelope for every failure."""

import pytest

from legacy_django.commerce.models import Order
from legacy_django.items.models import Item, ItemOption
from tests.legacy.conftest import assert_error


def test_item_detail_stock_is_the_sum_of_option_stock(api):
    body = api.get("/api/v1/items/1").json()
    options = list(ItemOption.objects.filter(item_id=1).order_by("id"))
    assert body["options"] == [{"id": o.pk, "name": o.name, "stock": o.stock} for o in options]
    assert body["stock"] == sum(o.stock for o in options)
    assert body["in_stock"] is (body["stock"] > 0)
    item = Item.objects.get(pk=1)
    assert body["sale_price"] == item.price - item.price * item.discount_rate // 100


def test_item_list_and_category_filter(api):
    body = api.get("/api/v1/items?size=5&category=shoes").json()
    assert body["pagination"]["total"] == Item.objects.filter(category__slug="shoes").count()
    assert {item["category"] for item in body["items"]} == {"shoes"}
    if body["pagination"]["next"]:
        assert body["pagination"]["next"].endswith("category=shoes")


def test_item_errors(api):
    assert_error(api.get("/api/v1/items/999999"), 404, "not_found")
    assert_error(api.get("/api/v1/items/x1"), 400, "validation_error")
    assert_error(api.post("/api/v1/items/1/views"), 401, "unauthenticated")
    assert_error(api.post("/api/v1/items/999999/views", user="demo1"), 404, "not_found")


def test_search_finds_by_name_and_brand(api):
    item = Item.objects.select_related("brand").get(pk=3)
    by_brand = api.get(f"/api/v1/search/items?q={item.brand.name}&size=100").json()
    assert item.pk in [i["id"] for i in by_brand["items"]]
    assert_error(api.get("/api/v1/search/items"), 400, "validation_error")


def test_order_placement_takes_stock_and_is_listed(api):
    option = ItemOption.objects.filter(stock__gte=2).order_by("id").first()
    item_stock = Item.objects.get(pk=option.item_id).stock
    response = api.post("/api/v1/orders", {"lines": [{"option_id": option.pk, "quantity": 2}]}, user="demo1")
    assert response.status_code == 201
    assert ItemOption.objects.get(pk=option.pk).stock == option.stock - 2
    assert Item.objects.get(pk=option.item_id).stock == item_stock - 2
    order_id = response.json()["id"]
    assert order_id in [o["id"] for o in api.get("/api/v1/orders?size=100", user="demo1").json()["items"]]


def test_order_beyond_stock_is_409_and_takes_nothing(api):
    option = ItemOption.objects.filter(stock__lt=20).order_by("id").first()
    orders = Order.objects.count()
    error = assert_error(
        api.post("/api/v1/orders", {"lines": [{"option_id": option.pk, "quantity": 20}]}, user="demo1"),
        409,
        "sold_out",
        extra={"option_ids"},
    )
    assert error["option_ids"] == [option.pk]
    assert ItemOption.objects.get(pk=option.pk).stock == option.stock
    assert Order.objects.count() == orders


def test_health(api):
    assert api.get("/health").json() == {"status": "ok"}


@pytest.mark.parametrize(
    "path",
    [
        "/nope",
        "/api/v1/reviews/items/1/",
        "/api/v2/reviews/items/1",
        "/API/V1/REVIEWS/ME",
        "/api/v1/reviews/1/2/3",
    ],
)
def test_unknown_paths_are_404_envelopes(api, path):
    assert_error(api.get(path), 404, "not_found")


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("PATCH", "/api/v1/reviews/1", "DELETE, GET, HEAD"),
        ("POST", "/api/v1/reviews/items/1", "GET, HEAD"),
        ("DELETE", "/api/v1/reviews", "POST"),
        ("PUT", "/api/v1/recommendations/home", "GET, HEAD"),
        ("OPTIONS", "/api/v1/users/me", "GET, HEAD"),
    ],
)
def test_wrong_method_is_405_with_allow(api, method, path, allow):
    response = api.request(method, path)
    assert_error(response, 405, "method_not_allowed")
    assert response["Allow"] == allow


def test_request_id_is_generated_or_echoed(api):
    generated = api.get("/api/v1/reviews/items/1")["X-Request-Id"]
    assert len(generated) == 32
    assert (
        api.get("/api/v1/reviews/items/1", headers={"X-Request-Id": "abc-123"})["X-Request-Id"] == "abc-123"
    )
    unsafe = api.get("/api/v1/reviews/items/1", headers={"X-Request-Id": "a b<script>"})["X-Request-Id"]
    assert unsafe != "a b<script>" and len(unsafe) == 32


def test_an_unexpected_failure_is_a_500_envelope_without_a_trace(api, monkeypatch):
    from legacy_django.reviews import selectors

    def boom(*args, **kwargs):
        raise RuntimeError("database exploded: secret detail")

    monkeypatch.setattr(selectors, "review_summary", boom)
    response = api.get("/api/v1/reviews/items/1/summary")
    error = assert_error(response, 500, "internal_error")
    assert "secret" not in response.content.decode() and "Traceback" not in response.content.decode()
    assert error["message"] == "Internal server error."


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/reviews/items/%00",
        "/api/v1/reviews/items/1?page=%ff",
        "/api/v1/reviews/items/1?size=" + "9" * 400,
        "/api/v1/reviews/%EA%B0%80",
        "/api/v1/recommendations/items/" + "1" * 19 + "/similar",
    ],
)
def test_hostile_input_never_gets_a_500(api, path):
    response = api.get(path)
    assert 400 <= response.status_code < 500
    assert "error" in response.json()
