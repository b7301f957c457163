from collections import Counter
from datetime import datetime

from django.db.models import Max

from legacy_django.activation.models import ViewHistory


def viewed_item_ids(user_id: int) -> set[int]:
    return set(ViewHistory.objects.filter(user_id=user_id).values_list("item_id", flat=True).distinct())


def category_affinity(user_id: int) -> Counter[int]:
    """How many times the user viewed items of each category id."""
    rows = ViewHistory.objects.filter(user_id=user_id).values_list("item__category_id", flat=True)
    return Counter(rows)


def recently_viewed(user_id: int, limit: int) -> list[tuple[int, datetime]]:
    """Distinct items by last view, newest first; ties by item id, highest first."""
    rows = (
        ViewHistory.objects.filter(user_id=user_id)
        .values("item_id")
        .annotate(last_viewed=Max("viewed_at"))
        .order_by("-last_viewed", "-item_id")[:limit]
    )
    return [(row["item_id"], row["last_viewed"]) for row in rows]
