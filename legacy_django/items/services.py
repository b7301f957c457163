"""Writes of items: creating one with its options, the two stock decrements a purchase is made of, and
the outbox of item events.

Every write keeps ``Item.stock`` equal to the sum of its options' stock in the same transaction. The
decrements are conditional (``... WHERE stock >= quantity``), so stock never goes below zero whatever
runs concurrently; in what order a purchase calls them is commerce's business (ADR 0015).

``item_event`` appends an event about an item to the outbox in the caller's transaction (ADR 0018):
every app that changes what the catalog shows calls it after its own updates of the item's row, so the
row is the last lock the transaction takes (ADR 0015's order: options, then items) and the item's
event versions follow its commits.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from events import payloads
from legacy_django.items.models import Item, ItemOption, OutboxEvent
from legacy_django.items.selectors import item_snapshots

Build = Callable[[payloads.ItemState], payloads.Payload]


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
        item_event(item.pk, payloads.ITEM_CREATED, payloads.item_created)
    return item, created


def option_take(option_id: int, quantity: int) -> bool:
    """Take ``quantity`` of an option if that many are left (locks the row); False if fewer are."""
    return (
        ItemOption.objects.filter(pk=option_id, stock__gte=quantity).update(stock=F("stock") - quantity) == 1
    )


def item_take(item_id: int, quantity: int) -> bool:
    """Take ``quantity`` off the item's total (locks the row); False if fewer are left."""
    return Item.objects.filter(pk=item_id, stock__gte=quantity).update(stock=F("stock") - quantity) == 1


def item_event(item_id: int, event_type: str, build: Build) -> OutboxEvent:
    """Append an event about ``item_id`` to the outbox, in the caller's transaction and after its own
    writes: the item's ``event_version`` goes up by one (locking its row until commit), and the event
    ``build(state)`` carries that version and the item's state as this transaction leaves it."""
    now = timezone.now()
    Item.objects.filter(pk=item_id).update(event_version=F("event_version") + 1, changed_at=now)
    snapshot = item_snapshots([item_id])[item_id]
    return OutboxEvent.objects.create(
        event_id=payloads.new_event_id(),
        type=event_type,
        key=item_id,
        version=snapshot.version,
        payload=payloads.encode(build(snapshot.state)),
        occurred_at=now,
    )


def stock_event(item_id: int) -> OutboxEvent:
    """``stock.changed``, after an order took stock of the item's options."""
    return item_event(item_id, payloads.STOCK_CHANGED, payloads.stock_changed)
