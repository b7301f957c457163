from django.conf import settings
from django.db import models

from legacy_django.items.models import ItemOption


class Order(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="orders")
    total = models.PositiveIntegerField()
    created_at = models.DateTimeField()

    class Meta:
        db_table = "commerce_order"


class OrderLine(models.Model):
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="lines")
    option = models.ForeignKey(ItemOption, on_delete=models.PROTECT, related_name="+")
    quantity = models.PositiveIntegerField()
    unit_price = models.PositiveIntegerField()

    class Meta:
        db_table = "commerce_orderline"
