"""Review writes. Each keeps the item's review counters in the same transaction, and appends its
event to the outbox there, last, once the item's row is updated (ADR 0018)."""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from events import payloads
from legacy_django.common.errors import Conflict, Forbidden, ValidationFailed
from legacy_django.items.models import Item
from legacy_django.items.selectors import item_exists
from legacy_django.items.services import item_event
from legacy_django.reviews.models import BODY_MAX_LENGTH, HelpfulVote, Review
from legacy_django.reviews.selectors import review_get


def _validated(data: dict[str, Any]) -> tuple[int, int, str]:
    item_id, rating, body = data.get("item_id"), data.get("rating"), data.get("body")
    errors: dict[str, list[str]] = {}
    if item_id is None:
        errors["item_id"] = ["is required"]
    elif type(item_id) is not int or not 1 <= item_id < 10**18:
        errors["item_id"] = ["must be a positive integer"]
    if rating is None:
        errors["rating"] = ["is required"]
    elif type(rating) is not int or not 1 <= rating <= 5:
        errors["rating"] = ["must be an integer from 1 to 5"]
    if body is None:
        errors["body"] = ["is required"]
    elif not isinstance(body, str) or not body.strip():
        errors["body"] = ["must be a non-empty string"]
    elif len(body) > BODY_MAX_LENGTH:
        errors["body"] = [f"must be at most {BODY_MAX_LENGTH} characters"]
    if not errors and not item_exists(item_id):  # type: ignore[arg-type]
        errors["item_id"] = ["does not exist"]
    if errors:
        raise ValidationFailed(errors)
    return item_id, rating, body  # type: ignore[return-value]


def _review_event(event_type: str, item_id: int, review_id: int, rating: int) -> None:
    """``review.created`` / ``review.deleted`` with the item as this transaction leaves it."""

    def build(state: payloads.ItemState) -> payloads.Payload:
        return payloads.review_changed(state, review_id=review_id, rating=rating)

    item_event(item_id, event_type, build)


def _duplicate(item_id: int) -> Conflict:
    return Conflict(f"You have already reviewed item {item_id}.")


def review_create(user_id: int, data: dict[str, Any]) -> Review:
    item_id, rating, body = _validated(data)
    try:
        with transaction.atomic():
            if Review.objects.filter(user_id=user_id, item_id=item_id).exists():
                raise _duplicate(item_id)
            review = Review.objects.create(
                user_id=user_id, item_id=item_id, rating=rating, body=body, created_at=timezone.now()
            )
            Item.objects.filter(pk=item_id).update(
                review_count=F("review_count") + 1, rating_total=F("rating_total") + rating
            )
            _review_event(payloads.REVIEW_CREATED, item_id, review.pk, rating)
    except IntegrityError:
        # Two concurrent creates: the unique constraint decides, the loser gets the same 409.
        raise _duplicate(item_id) from None
    return review_get(review.pk)


def review_vote_helpful(user_id: int, review_id: int) -> Review:
    """Idempotent: voting twice counts once."""
    review = review_get(review_id)
    if review.user_id == user_id:
        raise Forbidden("You cannot vote for your own review.")
    try:
        with transaction.atomic():
            _, created = HelpfulVote.objects.get_or_create(
                review_id=review_id, user_id=user_id, defaults={"created_at": timezone.now()}
            )
            if created:
                Review.objects.filter(pk=review_id).update(helpful_count=F("helpful_count") + 1)
                helpful_count = (
                    Review.objects.filter(pk=review_id).values_list("helpful_count", flat=True).get()
                )

                def build(state: payloads.ItemState) -> payloads.Payload:
                    return payloads.review_helpful(state, review_id=review_id, helpful_count=helpful_count)

                item_event(review.item_id, payloads.REVIEW_HELPFUL, build)
    except IntegrityError:
        pass  # a concurrent identical vote won; the result is the same
    return review_get(review_id)


def review_delete(user_id: int, review_id: int) -> None:
    review = review_get(review_id)
    if review.user_id != user_id:
        raise Forbidden("You can only delete your own reviews.")
    with transaction.atomic():
        deleted, _ = Review.objects.filter(pk=review_id).delete()
        if deleted:
            Item.objects.filter(pk=review.item_id).update(
                review_count=F("review_count") - 1, rating_total=F("rating_total") - review.rating
            )
            _review_event(payloads.REVIEW_DELETED, review.item_id, review_id, review.rating)
