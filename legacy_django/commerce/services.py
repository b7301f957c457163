from typing import Any

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from legacy_django.commerce.models import Order, OrderLine
from legacy_django.common.errors import Conflict, ValidationFailed
from legacy_django.items.models import ItemOption
from legacy_django.items.selectors import sale_price

MAX_QUANTITY = 20


def _validated(data: dict[str, Any]) -> tuple[int, int]:
    option_id, quantity = data.get("option_id"), data.get("quantity", 1)
    errors: dict[str, list[str]] = {}
    if type(option_id) is not int or option_id < 1:
        errors["option_id"] = ["must be a positive integer"]
    if type(quantity) is not int or not 1 <= quantity <= MAX_QUANTITY:
        errors["quantity"] = [f"must be an integer from 1 to {MAX_QUANTITY}"]
    if errors:
        raise ValidationFailed(errors)
    return option_id, quantity


def order_place(user_id: int, data: dict[str, Any]) -> Order:
    """Buy ``quantity`` of one option: stock goes down in the same transaction (not idempotent)."""
    option_id, quantity = _validated(data)
    with transaction.atomic():
        option = ItemOption.objects.select_for_update().select_related("item").filter(pk=option_id).first()
        if option is None:
            raise ValidationFailed({"option_id": ["does not exist"]})
        if option.stock < quantity:
            raise Conflict(f"Only {option.stock} left of option {option_id}.")
        ItemOption.objects.filter(pk=option_id).update(stock=F("stock") - quantity)
        unit_price = sale_price(option.item.price, option.item.discount_rate)
        order = Order.objects.create(user_id=user_id, total=unit_price * quantity, created_at=timezone.now())
        OrderLine.objects.create(order=order, option=option, quantity=quantity, unit_price=unit_price)
    return order
