"""The three recommendations.* hot endpoints: ranking rules, auth, limits."""

from collections import Counter

import pytest

from legacy_django.activation.models import ViewHistory
from legacy_django.items.models import Item
from tests.legacy.conftest import assert_error, user_id


def _in_stock_ids() -> set[int]:
    return {item.pk for item in Item.objects.all() if sum(o.stock for o in item.options.all()) > 0}


def test_home_follows_the_documented_ranking(api):
    me = user_id("demo1")
    body = api.get("/api/v1/recommendations/home?limit=50", user="demo1").json()
    views = ViewHistory.objects.filter(user_id=me).select_related("item")
    affinity = Counter(view.item.category_id for view in views)
    seen = {view.item_id for view in views}
    candidates = [item for item in Item.objects.filter(pk__in=_in_stock_ids()) if item.pk not in seen]
    candidates.sort(key=lambda item: (-affinity[item.category_id], -item.review_count, item.pk))
    assert [entry["id"] for entry in body["items"]] == [item.pk for item in candidates[:50]]
    assert body["limit"] == 50
    for entry in body["items"]:
        category = Item.objects.get(pk=entry["id"]).category_id
        assert entry["reason"] == ("viewed_category" if affinity[category] else "popular")
        assert entry["in_stock"] is True


def test_home_is_deterministic_and_respects_limit(api):
    first = api.get("/api/v1/recommendations/home?limit=3", user="demo2")
    second = api.get("/api/v1/recommendations/home?limit=3", user="demo2")
    assert first.content == second.content
    assert len(first.json()["items"]) == 3
    assert len(api.get("/api/v1/recommendations/home", user="demo2").json()["items"]) == 10


def test_home_needs_a_user(api):
    assert_error(api.get("/api/v1/recommendations/home"), 401, "unauthenticated")


@pytest.mark.parametrize("limit", ["0", "51", "ten", "-5", ""])
def test_limit_out_of_range(api, limit):
    error = assert_error(
        api.get(f"/api/v1/recommendations/home?limit={limit}", user="demo1"), 400, "validation_error"
    )
    assert list(error["fields"]) == ["limit"]


def test_similar_ranks_same_brand_then_popularity_then_price(api):
    item = Item.objects.get(pk=1)
    body = api.get("/api/v1/recommendations/items/1/similar?limit=50").json()
    candidates = [
        other
        for other in Item.objects.filter(category_id=item.category_id, pk__in=_in_stock_ids())
        if other.pk != item.pk
    ]
    candidates.sort(
        key=lambda o: (o.brand_id != item.brand_id, -o.review_count, abs(o.price - item.price), o.pk)
    )
    assert body["item_id"] == 1
    assert [entry["id"] for entry in body["items"]] == [o.pk for o in candidates[:50]]


def test_similar_for_a_signed_in_user_skips_items_they_viewed(api):
    item = Item.objects.get(pk=1)
    anonymous = [e["id"] for e in api.get("/api/v1/recommendations/items/1/similar?limit=50").json()["items"]]
    viewed = anonymous[0]
    ViewHistory.objects.create(user_id=user_id("demo3"), item_id=viewed, viewed_at=item.created_at)
    signed_in = [
        e["id"]
        for e in api.get("/api/v1/recommendations/items/1/similar?limit=50", user="demo3").json()["items"]
    ]
    assert viewed not in signed_in
    assert signed_in == [i for i in anonymous if i != viewed and i in signed_in]


def test_similar_errors(api):
    assert_error(api.get("/api/v1/recommendations/items/999999/similar"), 404, "not_found")
    assert_error(api.get("/api/v1/recommendations/items/abc/similar"), 400, "validation_error")
    assert_error(api.get("/api/v1/recommendations/items/1/similar?limit=0"), 400, "validation_error")


def test_recording_a_view_puts_the_item_first_in_recently_viewed(api):
    before = api.get("/api/v1/recommendations/recently-viewed?limit=50", user="demo4").json()["items"]
    target = Item.objects.exclude(pk__in=[e["id"] for e in before[:1]]).order_by("-id").first().pk
    response = api.post(f"/api/v1/items/{target}/views", user="demo4")
    assert response.status_code == 201
    assert response.json()["item_id"] == target
    after = api.get("/api/v1/recommendations/recently-viewed?limit=50", user="demo4").json()["items"]
    assert after[0]["id"] == target
    assert after[0]["viewed_at"] == response.json()["viewed_at"]
    assert len({e["id"] for e in after}) == len(after), "items are distinct"


def test_recently_viewed_orders_by_last_view(api):
    me = user_id("demo5")
    body = api.get("/api/v1/recommendations/recently-viewed?limit=50", user="demo5").json()
    last_seen: dict[int, object] = {}
    for view in ViewHistory.objects.filter(user_id=me):
        last_seen[view.item_id] = max(last_seen.get(view.item_id, view.viewed_at), view.viewed_at)
    expected = sorted(last_seen, key=lambda i: (last_seen[i], i), reverse=True)[:50]
    assert [e["id"] for e in body["items"]] == expected


def test_recently_viewed_needs_a_user(api):
    assert_error(api.get("/api/v1/recommendations/recently-viewed"), 401, "unauthenticated")
