"""Reads of reviews, and their JSON shape (``helpful_by_me`` only for a signed-in viewer)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db.models import Count

from legacy_django.common.errors import NotFound
from legacy_django.common.pagination import PageRequest
from legacy_django.common.responses import average, timestamp
from legacy_django.items.selectors import item_get
from legacy_django.reviews.models import HelpfulVote, Review

SORTS = ("recent", "rating")
_ORDERING = {"recent": ("-created_at", "-id"), "rating": ("-rating", "-created_at", "-id")}


def review_json(review: Review, helpful_ids: set[int] | None) -> dict[str, Any]:
    """``helpful_ids`` is None for an anonymous viewer (no ``helpful_by_me`` key at all)."""
    data: dict[str, Any] = {
        "id": review.pk,
        "item_id": review.item_id,
        "author": {"id": review.user_id, "display_name": review.user.display_name},
        "rating": review.rating,
        "body": review.body,
        "helpful_count": review.helpful_count,
        "created_at": timestamp(review.created_at),
    }
    if helpful_ids is not None:
        data["helpful_by_me"] = review.pk in helpful_ids
    return data


def helpful_review_ids(viewer_id: int | None, review_ids: Iterable[int]) -> set[int] | None:
    if viewer_id is None:
        return None
    ids = list(review_ids)
    if not ids:
        return set()
    return set(
        HelpfulVote.objects.filter(user_id=viewer_id, review_id__in=ids).values_list("review_id", flat=True)
    )


def _page_json(reviews: list[Review], viewer_id: int | None) -> list[dict[str, Any]]:
    helpful = helpful_review_ids(viewer_id, (review.pk for review in reviews))
    return [review_json(review, helpful) for review in reviews]


def review_list_for_item(
    item_id: int, page: PageRequest, sort: str, viewer_id: int | None
) -> tuple[list[dict[str, Any]], int]:
    item_get(item_id)
    queryset = Review.objects.filter(item_id=item_id)
    rows = list(
        queryset.select_related("user").order_by(*_ORDERING[sort])[page.offset : page.offset + page.size]
    )
    return _page_json(rows, viewer_id), queryset.count()


def review_list_for_user(user_id: int, page: PageRequest) -> tuple[list[dict[str, Any]], int]:
    queryset = Review.objects.filter(user_id=user_id)
    rows = list(
        queryset.select_related("user").order_by(*_ORDERING["recent"])[page.offset : page.offset + page.size]
    )
    return _page_json(rows, user_id), queryset.count()


def review_get(review_id: int) -> Review:
    review = Review.objects.select_related("user").filter(pk=review_id).first()
    if review is None:
        raise NotFound(f"Review {review_id} does not exist.")
    return review


def review_detail(review_id: int, viewer_id: int | None) -> dict[str, Any]:
    return _page_json([review_get(review_id)], viewer_id)[0]


def review_summary(item_id: int) -> dict[str, Any]:
    item_get(item_id)
    counts = dict(
        Review.objects.filter(item_id=item_id)
        .values_list("rating")
        .annotate(n=Count("id"))
        .order_by("rating")
    )
    count = sum(counts.values())
    total = sum(rating * n for rating, n in counts.items())
    return {
        "item_id": item_id,
        "review_count": count,
        "rating_average": average(total, count),
        "distribution": {str(rating): counts.get(rating, 0) for rating in range(1, 6)},
    }
