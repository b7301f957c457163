"""The seven reviews.* hot endpoints on the monolith: success and every error case."""

import json

import pytest

from legacy_django.items.models import Item
from legacy_django.reviews.models import HelpfulVote, Review
from tests.legacy.conftest import assert_error, user_id

MALFORMED_IDS = ["abc", "-1", "0", "01", "1.5", "9" * 20]


def _item_with_reviews(minimum: int = 3) -> int:
    return Item.objects.filter(review_count__gte=minimum).order_by("id").values_list("id", flat=True)[0]


def _review_by_other(username: str) -> Review:
    return Review.objects.exclude(user_id=user_id(username)).order_by("id").first()


def _unreviewed_item(username: str) -> int:
    reviewed = Review.objects.filter(user_id=user_id(username)).values_list("item_id", flat=True)
    return Item.objects.exclude(id__in=reviewed).order_by("id").values_list("id", flat=True)[0]


# --- reviews.list -----------------------------------------------------------------------------------


def test_list_returns_reviews_newest_first_with_pagination(api):
    item = _item_with_reviews()
    response = api.get(f"/api/v1/reviews/items/{item}?size=2")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    body = response.json()
    total = Review.objects.filter(item_id=item).count()
    assert body["pagination"] == {
        "page": 1,
        "size": 2,
        "total": total,
        "pages": (total + 1) // 2,
        "next": f"/api/v1/reviews/items/{item}?page=2&size=2&sort=recent",
        "prev": None,
    }
    expected = list(
        Review.objects.filter(item_id=item).order_by("-created_at", "-id").values_list("id", flat=True)[:2]
    )
    assert [r["id"] for r in body["items"]] == expected
    first = body["items"][0]
    assert list(first) == ["id", "item_id", "author", "rating", "body", "helpful_count", "created_at"]
    assert first["created_at"].endswith("Z") and len(first["created_at"]) == 20


def test_list_sorted_by_rating_breaks_ties_by_recency(api):
    item = _item_with_reviews(5)
    body = api.get(f"/api/v1/reviews/items/{item}?sort=rating&size=100").json()
    rows = Review.objects.filter(item_id=item).order_by("-rating", "-created_at", "-id")
    assert [r["id"] for r in body["items"]] == [r.id for r in rows]
    assert [r["rating"] for r in body["items"]] == sorted((r["rating"] for r in body["items"]), reverse=True)


def test_last_page_and_past_the_end(api):
    item = _item_with_reviews(3)
    total = Review.objects.filter(item_id=item).count()
    last = api.get(f"/api/v1/reviews/items/{item}?page={total}&size=1").json()
    assert len(last["items"]) == 1
    assert last["pagination"]["next"] is None
    assert last["pagination"]["prev"] == f"/api/v1/reviews/items/{item}?page={total - 1}&size=1&sort=recent"
    past = api.get(f"/api/v1/reviews/items/{item}?page={total + 5}&size=1").json()
    assert past["items"] == []
    assert past["pagination"]["next"] is None
    assert past["pagination"]["prev"] == f"/api/v1/reviews/items/{item}?page={total}&size=1&sort=recent"


def test_item_without_reviews_is_an_empty_page(api):
    item = Item.objects.filter(review_count=0).first() or Item.objects.create(
        name="Empty", brand_id=1, category_id=1, price=1000, created_at="2026-01-01T00:00:00Z"
    )
    body = api.get(f"/api/v1/reviews/items/{item.pk}").json()
    assert body == {
        "items": [],
        "pagination": {"page": 1, "size": 20, "total": 0, "pages": 0, "next": None, "prev": None},
    }


def test_signed_in_list_adds_helpful_by_me(api):
    vote = HelpfulVote.objects.filter(user_id=user_id("demo1")).first()
    if vote is None:
        review = _review_by_other("demo1")
        vote = HelpfulVote.objects.create(
            review=review, user_id=user_id("demo1"), created_at=review.created_at
        )
    item = vote.review.item_id
    body = api.get(f"/api/v1/reviews/items/{item}?size=100", user="demo1").json()
    flags = {r["id"]: r["helpful_by_me"] for r in body["items"]}
    assert flags[vote.review_id] is True
    voted = set(HelpfulVote.objects.filter(user_id=user_id("demo1")).values_list("review_id", flat=True))
    assert flags == {rid: rid in voted for rid in flags}


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("size=0", "size"),
        ("size=101", "size"),
        ("size=abc", "size"),
        ("page=0", "page"),
        ("page=-1", "page"),
        ("page=x", "page"),
        ("page=1e3", "page"),
        ("sort=oldest", "sort"),
    ],
)
def test_bad_list_parameters_are_validation_errors(api, query, field):
    error = assert_error(api.get(f"/api/v1/reviews/items/1?{query}"), 400, "validation_error")
    assert list(error["fields"]) == [field]


@pytest.mark.parametrize("raw", MALFORMED_IDS)
def test_list_with_malformed_item_id(api, raw):
    error = assert_error(api.get(f"/api/v1/reviews/items/{raw}"), 400, "validation_error")
    assert list(error["fields"]) == ["item_id"]


def test_list_for_unknown_item_is_404(api):
    error = assert_error(api.get("/api/v1/reviews/items/999999"), 404, "not_found")
    assert error["message"] == "Item 999999 does not exist."


# --- reviews.summary --------------------------------------------------------------------------------


def test_summary_counts_and_averages(api):
    item = _item_with_reviews()
    body = api.get(f"/api/v1/reviews/items/{item}/summary").json()
    ratings = list(Review.objects.filter(item_id=item).values_list("rating", flat=True))
    assert body["item_id"] == item
    assert body["review_count"] == len(ratings)
    assert body["distribution"] == {str(n): ratings.count(n) for n in range(1, 6)}
    assert body["rating_average"] == round(sum(ratings) / len(ratings) + 1e-9, 2)


def test_summary_for_unknown_and_malformed_items(api):
    assert_error(api.get("/api/v1/reviews/items/999999/summary"), 404, "not_found")
    assert_error(api.get("/api/v1/reviews/items/abc/summary"), 400, "validation_error")


# --- reviews.detail ---------------------------------------------------------------------------------


def test_detail_anonymous_and_signed_in(api):
    review = Review.objects.order_by("id").first()
    anonymous = api.get(f"/api/v1/reviews/{review.pk}").json()
    assert anonymous["id"] == review.pk and "helpful_by_me" not in anonymous
    signed_in = api.get(f"/api/v1/reviews/{review.pk}", user="demo2").json()
    assert (
        signed_in["helpful_by_me"]
        is HelpfulVote.objects.filter(review=review, user_id=user_id("demo2")).exists()
    )


@pytest.mark.parametrize("raw", MALFORMED_IDS)
def test_detail_with_malformed_id(api, raw):
    assert_error(api.get(f"/api/v1/reviews/{raw}"), 400, "validation_error")


def test_detail_unknown_review(api):
    error = assert_error(api.get("/api/v1/reviews/999999999"), 404, "not_found")
    assert error["message"] == "Review 999999999 does not exist."


# --- reviews.create ---------------------------------------------------------------------------------


def test_create_then_read_it_back(api):
    item = _unreviewed_item("demo1")
    before = Item.objects.get(pk=item)
    response = api.post(
        "/api/v1/reviews", {"item_id": item, "rating": 4, "body": "정말 좋아요! Great."}, user="demo1"
    )
    assert response.status_code == 201
    created = response.json()
    assert response["Location"] == f"/api/v1/reviews/{created['id']}"
    assert created["item_id"] == item and created["rating"] == 4 and created["body"] == "정말 좋아요! Great."
    assert created["author"] == {"id": user_id("demo1"), "display_name": "김민준"}
    assert created["helpful_count"] == 0 and created["helpful_by_me"] is False
    assert api.get(f"/api/v1/reviews/{created['id']}", user="demo1").json() == created
    first = api.get(f"/api/v1/reviews/items/{item}").json()["items"][0]
    assert first["id"] == created["id"]
    after = Item.objects.get(pk=item)
    assert (after.review_count, after.rating_total) == (before.review_count + 1, before.rating_total + 4)
    assert created["id"] in [
        r["id"] for r in api.get("/api/v1/reviews/me?size=100", user="demo1").json()["items"]
    ]


def test_body_of_exactly_2000_characters_is_accepted(api):
    item = _unreviewed_item("demo2")
    response = api.post("/api/v1/reviews", {"item_id": item, "rating": 5, "body": "가" * 2000}, user="demo2")
    assert response.status_code == 201
    assert len(response.json()["body"]) == 2000


def test_duplicate_review_is_409(api):
    item = _unreviewed_item("demo3")
    body = {"item_id": item, "rating": 3, "body": "ok"}
    assert api.post("/api/v1/reviews", body, user="demo3").status_code == 201
    error = assert_error(api.post("/api/v1/reviews", body, user="demo3"), 409, "conflict")
    assert error["message"] == f"You have already reviewed item {item}."
    assert Review.objects.filter(user_id=user_id("demo3"), item_id=item).count() == 1


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({}, {"item_id", "rating", "body"}),
        ({"item_id": 1, "rating": 0, "body": "x"}, {"rating"}),
        ({"item_id": 1, "rating": 6, "body": "x"}, {"rating"}),
        ({"item_id": 1, "rating": 4.5, "body": "x"}, {"rating"}),
        ({"item_id": 1, "rating": True, "body": "x"}, {"rating"}),
        ({"item_id": 1, "rating": "5", "body": "x"}, {"rating"}),
        ({"item_id": 1, "rating": 5, "body": "x" * 2001}, {"body"}),
        ({"item_id": 1, "rating": 5, "body": "   "}, {"body"}),
        ({"item_id": 1, "rating": 5, "body": ["x"]}, {"body"}),
        ({"item_id": "1", "rating": 5, "body": "x"}, {"item_id"}),
        ({"item_id": -3, "rating": 5, "body": "x"}, {"item_id"}),
        ({"item_id": 10**20, "rating": 5, "body": "x"}, {"item_id"}),
        ({"item_id": 999999, "rating": 5, "body": "x"}, {"item_id"}),
    ],
)
def test_create_validation_errors_name_the_fields(api, body, fields):
    count = Review.objects.count()
    error = assert_error(api.post("/api/v1/reviews", body, user="demo4"), 400, "validation_error")
    assert set(error["fields"]) == fields
    assert Review.objects.count() == count


def test_create_rejects_non_json_bodies(api):
    assert_error(api.post("/api/v1/reviews", '{"item_id": 1,', user="demo4"), 400, "bad_request")
    assert_error(api.post("/api/v1/reviews", "[1, 2]", user="demo4"), 400, "bad_request")
    assert_error(api.post("/api/v1/reviews", b"\xff\xfe", user="demo4"), 400, "bad_request")
    assert_error(
        api.post(
            "/api/v1/reviews", "item_id=1", user="demo4", content_type="application/x-www-form-urlencoded"
        ),
        415,
        "unsupported_media_type",
    )
    assert_error(
        api.post("/api/v1/reviews", "x", user="demo4", content_type="text/plain"),
        415,
        "unsupported_media_type",
    )


def test_create_accepts_json_with_charset(api):
    item = _unreviewed_item("demo5")
    response = api.post(
        "/api/v1/reviews",
        json.dumps({"item_id": item, "rating": 2, "body": "meh"}),
        user="demo5",
        content_type="application/json; charset=utf-8",
    )
    assert response.status_code == 201


def test_create_requires_authentication(api):
    assert_error(
        api.post("/api/v1/reviews", {"item_id": 1, "rating": 5, "body": "x"}), 401, "unauthenticated"
    )


def test_oversized_body_is_413(api, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    assert_error(
        api.post("/api/v1/reviews", {"item_id": 1, "rating": 5, "body": "x" * 5000}, user="demo1"),
        413,
        "payload_too_large",
    )


# --- reviews.helpful --------------------------------------------------------------------------------


def test_helpful_vote_is_idempotent(api):
    review = _review_by_other("demo2")
    HelpfulVote.objects.filter(review=review, user_id=user_id("demo2")).delete()
    Review.objects.filter(pk=review.pk).update(helpful_count=7)
    first = api.request("PUT", f"/api/v1/reviews/{review.pk}/helpful", user="demo2")
    second = api.request("PUT", f"/api/v1/reviews/{review.pk}/helpful", user="demo2")
    assert first.status_code == second.status_code == 200
    assert (
        first.json() == second.json() == {"review_id": review.pk, "helpful_count": 8, "helpful_by_me": True}
    )
    assert api.get(f"/api/v1/reviews/{review.pk}", user="demo2").json()["helpful_by_me"] is True


def test_voting_for_your_own_review_is_403(api):
    review = Review.objects.filter(user_id=user_id("demo1")).first()
    assert_error(api.request("PUT", f"/api/v1/reviews/{review.pk}/helpful", user="demo1"), 403, "forbidden")


def test_helpful_errors(api):
    assert_error(api.request("PUT", "/api/v1/reviews/1/helpful"), 401, "unauthenticated")
    assert_error(api.request("PUT", "/api/v1/reviews/999999/helpful", user="demo1"), 404, "not_found")
    assert_error(api.request("PUT", "/api/v1/reviews/abc/helpful", user="demo1"), 400, "validation_error")
    response = api.request("POST", "/api/v1/reviews/1/helpful", user="demo1")
    assert_error(response, 405, "method_not_allowed")
    assert response["Allow"] == "PUT"


# --- reviews.delete ---------------------------------------------------------------------------------


def test_owner_deletes_and_the_review_is_gone(api):
    review = Review.objects.filter(user_id=user_id("demo1")).order_by("id").first()
    before = Item.objects.get(pk=review.item_id)
    response = api.request("DELETE", f"/api/v1/reviews/{review.pk}", user="demo1")
    assert response.status_code == 204
    assert response.content == b""
    assert_error(api.get(f"/api/v1/reviews/{review.pk}"), 404, "not_found")
    after = Item.objects.get(pk=review.item_id)
    assert (after.review_count, after.rating_total) == (
        before.review_count - 1,
        before.rating_total - review.rating,
    )
    assert_error(api.request("DELETE", f"/api/v1/reviews/{review.pk}", user="demo1"), 404, "not_found")


def test_deleting_someone_elses_review_is_403(api):
    review = _review_by_other("demo1")
    error = assert_error(
        api.request("DELETE", f"/api/v1/reviews/{review.pk}", user="demo1"), 403, "forbidden"
    )
    assert error["message"] == "You can only delete your own reviews."
    assert Review.objects.filter(pk=review.pk).exists()


def test_delete_requires_authentication(api):
    assert_error(api.request("DELETE", "/api/v1/reviews/1"), 401, "unauthenticated")


# --- reviews.mine -----------------------------------------------------------------------------------


def test_mine_lists_only_my_reviews_newest_first(api):
    body = api.get("/api/v1/reviews/me?size=100", user="demo2").json()
    mine = Review.objects.filter(user_id=user_id("demo2")).order_by("-created_at", "-id")
    assert [r["id"] for r in body["items"]] == [r.id for r in mine]
    assert {r["author"]["id"] for r in body["items"]} <= {user_id("demo2")}
    assert body["pagination"]["total"] == mine.count()
    assert all("helpful_by_me" in r for r in body["items"])


def test_mine_requires_authentication_and_valid_paging(api):
    assert_error(api.get("/api/v1/reviews/me"), 401, "unauthenticated")
    assert_error(api.get("/api/v1/reviews/me?size=1000", user="demo2"), 400, "validation_error")
