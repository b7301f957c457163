from django.db import models


class Brand(models.Model):
    name = models.CharField(max_length=100, unique=True)

    class Meta:
        db_table = "items_brand"


class Category(models.Model):
    slug = models.SlugField(max_length=50, unique=True)
    name = models.CharField(max_length=100)

    class Meta:
        db_table = "items_category"


class Item(models.Model):
    """A product. Prices are whole won.

    ``stock`` is the sum of its options' stock, kept equal to it by every write that changes
    either (``items.services.item_create``, ``commerce.services.order_place``, the seed) in the
    same transaction; a purchase locks options before the item (ADR 0015). ``review_count`` and
    ``rating_total`` are counters kept by the reviews app in the same transaction as each review
    write, so item lists and recommendations need no join on reviews.
    """

    name = models.CharField(max_length=200)
    brand = models.ForeignKey(Brand, on_delete=models.PROTECT, related_name="items")
    category = models.ForeignKey(Category, on_delete=models.PROTECT, related_name="items")
    price = models.PositiveIntegerField()
    discount_rate = models.PositiveSmallIntegerField(default=0)
    review_count = models.PositiveIntegerField(default=0)
    rating_total = models.PositiveIntegerField(default=0)
    stock = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField()

    class Meta:
        db_table = "items_item"
        constraints = [
            models.CheckConstraint(
                condition=models.Q(discount_rate__lte=90), name="item_discount_rate_max_90"
            ),
        ]


class ItemOption(models.Model):
    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="options")
    name = models.CharField(max_length=100)
    stock = models.PositiveIntegerField(default=0)

    class Meta:
        db_table = "items_itemoption"
