from django.conf import settings
from django.db import models
from django.db.models.functions import Length

from legacy_django.items.models import Item

BODY_MAX_LENGTH = 2000

models.CharField.register_lookup(Length)
models.TextField.register_lookup(Length)


class Review(models.Model):
    """One review per user per item; rating 1-5; body up to 2000 characters."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="reviews")
    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="reviews")
    rating = models.PositiveSmallIntegerField()
    body = models.TextField()
    helpful_count = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField()

    class Meta:
        db_table = "reviews_review"
        constraints = [
            models.UniqueConstraint(fields=["user", "item"], name="review_one_per_user_per_item"),
            models.CheckConstraint(
                condition=models.Q(rating__gte=1, rating__lte=5), name="review_rating_1_to_5"
            ),
            models.CheckConstraint(
                condition=models.Q(body__length__lte=BODY_MAX_LENGTH), name="review_body_max_2000"
            ),
        ]
        indexes = [
            models.Index(fields=["item", "-created_at", "-id"], name="review_item_recent_idx"),
            models.Index(fields=["item", "-rating", "-created_at", "-id"], name="review_item_rating_idx"),
            models.Index(fields=["user", "-created_at", "-id"], name="review_user_recent_idx"),
        ]


class HelpfulVote(models.Model):
    review = models.ForeignKey(Review, on_delete=models.CASCADE, related_name="helpful_votes")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField()

    class Meta:
        db_table = "reviews_helpfulvote"
        constraints = [models.UniqueConstraint(fields=["review", "user"], name="helpful_vote_once")]
