"""The seed is deterministic and has the documented sizes."""

from django.db.models import Sum

from legacy_django.items.models import Item
from legacy_django.reviews.models import Review
from legacy_django.seed import data
from legacy_django.seed.management.commands.seed import build


def _fingerprint(rows):
    def values(obj):
        return tuple(sorted((k, v) for k, v in vars(obj).items() if k != "_state"))

    return [(model.__name__, [values(obj) for obj in objects]) for model, objects in rows]


def test_build_is_the_same_every_time():
    assert _fingerprint(build(data.SCALES["small"])) == _fingerprint(build(data.SCALES["small"]))


def test_large_scale_sizes():
    counts = {model.__name__: len(objects) for model, objects in build(data.SCALES["large"])}
    assert counts["Item"] == 501  # the catalogue and the time deal's item
    assert counts["TimeDeal"] == 1
    assert counts["User"] == 2005
    assert 18_000 <= counts["Review"] <= 22_000
    assert counts["ViewHistory"] >= 15_000
    options_per_item = counts["ItemOption"] / counts["Item"]
    assert 1 <= options_per_item <= 6


def test_seeded_database_is_consistent():
    # Item counters match the reviews, item stock the options'; demo users exist; Korean and English
    # bodies are present.
    for item in Item.objects.all():
        reviews = Review.objects.filter(item=item)
        assert item.review_count == reviews.count()
        assert item.rating_total == (reviews.aggregate(total=Sum("rating"))["total"] or 0)
        assert item.stock == sum(option.stock for option in item.options.all())
    bodies = list(Review.objects.values_list("body", flat=True))
    assert any(any("\uac00" <= ch <= "\ud7a3" for ch in body) for body in bodies)
    assert any(body.isascii() for body in bodies)
    assert Review.objects.filter(user__username__in=["demo1", "demo2"]).exists()
