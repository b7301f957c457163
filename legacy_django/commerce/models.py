from django.conf import settings
from django.db import models

from legacy_django.items.models import Item, ItemOption


class Order(models.Model):
    """A placed order: it exists only together with the stock it took (one transaction).

    Paying it (``commerce/checkout.py``) moves ``status`` to ``paid``, ``payment_failed`` (declined:
    nothing charged, it may be paid again) or ``payment_pending`` (the outcome is not known yet).
    ``payment_attempts`` numbers the payment attempts: every request for one attempt is one payment in
    the payments service (``payment_id``), and a new attempt starts only after a declined one.
    """

    PLACED = "placed"
    PAID = "paid"
    PAYMENT_FAILED = "payment_failed"
    PAYMENT_PENDING = "payment_pending"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="orders")
    status = models.CharField(max_length=20, default=PLACED)
    total = models.PositiveIntegerField()
    created_at = models.DateTimeField()
    payment_attempts = models.PositiveIntegerField(default=0)
    payment_id = models.CharField(max_length=40, blank=True, default="")

    class Meta:
        db_table = "commerce_order"


class OrderLine(models.Model):
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="lines")
    option = models.ForeignKey(ItemOption, on_delete=models.PROTECT, related_name="+")
    quantity = models.PositiveIntegerField()
    unit_price = models.PositiveIntegerField()

    class Meta:
        db_table = "commerce_orderline"


class TimeDeal(models.Model):
    """Some options of an item go on sale at ``opens_at`` (until ``closes_at``, if set).

    The deal sells its options' own stock: ``python -m legacy_django timedeal create`` makes a new
    item whose options hold the deal's stock; ``TimeDealOption.initial_stock`` records what each
    started with. Before ``opens_at`` (and after ``closes_at``) ordering one of them is a 409.
    """

    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="+")
    opens_at = models.DateTimeField()
    closes_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        db_table = "commerce_timedeal"


class TimeDealOption(models.Model):
    deal = models.ForeignKey(TimeDeal, on_delete=models.CASCADE, related_name="options")
    option = models.OneToOneField(ItemOption, on_delete=models.CASCADE, related_name="+")
    initial_stock = models.PositiveIntegerField()

    class Meta:
        db_table = "commerce_timedealoption"


class IdempotentRequest(models.Model):
    """The first answer to an ``Idempotency-Key``, written in the same transaction as the order.

    (user, key) is unique: of two concurrent requests with the same key one inserts the row, the
    other waits for it (PostgreSQL) or finds it (SQLite) and answers what the first answered.
    ``fingerprint`` is the SHA-256 of the request body; ``response`` the exact JSON sent back.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    fingerprint = models.CharField(max_length=64)
    status = models.PositiveSmallIntegerField()
    response = models.TextField()
    order = models.ForeignKey(Order, on_delete=models.CASCADE, null=True, related_name="+")
    created_at = models.DateTimeField()

    class Meta:
        db_table = "commerce_idempotentrequest"
        constraints = [models.UniqueConstraint(fields=["user", "key"], name="idempotent_request_user_key")]
