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

    ``event_version`` and ``changed_at`` belong to the item's events (ADR 0018): every write that
    appends an event about the item to the outbox (``items.services.item_event``) raises the version
    by one and sets ``changed_at`` in the same transaction, under the item's row lock, so one item's
    events are numbered 1, 2, 3 … in commit order.
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
    event_version = models.PositiveBigIntegerField(default=0)
    changed_at = models.DateTimeField(null=True, blank=True)

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


class OutboxEvent(models.Model):
    """An event about an item, written in the same transaction as the change it describes (ADR 0018).

    ``key`` is the item id and ``version`` the item's ``event_version`` after the change: (key,
    version) is unique, and an item's versions follow its commits. ``payload`` is the JSON of
    ``events.payloads`` (sorted keys). ``published_at`` is set by the relay once the broker confirmed
    the event (or the in-process consumer applied it); the relay reads the rows where it is null.
    """

    event_id = models.CharField(max_length=32, unique=True)
    type = models.CharField(max_length=40)
    key = models.BigIntegerField()
    version = models.PositiveBigIntegerField()
    payload = models.TextField()
    occurred_at = models.DateTimeField()
    published_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "items_outboxevent"
        constraints = [models.UniqueConstraint(fields=["key", "version"], name="outbox_key_version")]
        indexes = [
            models.Index(
                fields=["id"], condition=models.Q(published_at__isnull=True), name="outbox_unpublished_idx"
            )
        ]
