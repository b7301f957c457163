"""Writes of items: creating one with its options, and the two stock decrements a purchase is made of.

Every write keeps ``Item.stock`` equal to the sum of its options' stock in the same transaction. The
decrements are conditional (``... WHERE stock >= quantity``), so stock never goes below zero whatever
runs concurrently; in what order a purchase calls them is commerce's business (ADR 0015).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from django.db import transaction
from django.db.models import F

from legacy_django.items.models import Item, ItemOption


def item_create(
    *,
    name: str,
    brand_id: int,
    category_id: int,
    price: int,
    discount_rate: int,
    options: Sequence[tuple[str, int]],
    created_at: datetime,
) -> tuple[Item, list[ItemOption]]:
    """An item and its options (name, stock), with ``Item.stock`` their sum, in one transaction."""
    with transaction.atomic():
        item = Item.objects.create(
            name=name,
            brand_id=brand_id,
            category_id=category_id,
            price=price,
            discount_rate=discount_rate,
            stock=sum(stock for _, stock in options),
            created_at=created_at,
        )
        created = [ItemOption.objects.create(item=item, name=label, stock=stock) for label, stock in options]
    return item, created


def option_take(option_id: int, quantity: int) -> bool:
    """Take ``quantity`` of an option if that many are left (locks the row); False if fewer are."""
    return (
        ItemOption.objects.filter(pk=option_id, stock__gte=quantity).update(stock=F("stock") - quantity) == 1
    )


def item_take(item_id: int, quantity: int) -> bool:
    """Take ``quantity`` off the item's total (locks the row); False if fewer are left."""
    return Item.objects.filter(pk=item_id, stock__gte=quantity).update(stock=F("stock") - quantity) == 1
