"""Reads of items: summaries for lists, detail with options. An item's stock is its ``stock`` column,
which every write keeps equal to the sum of its options' stock (see ``Item``)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from django.db.models import Count, QuerySet

from events.payloads import ItemState, Snapshot
from legacy_django.common.errors import NotFound
from legacy_django.common.pagination import PageRequest
from legacy_django.common.responses import average
from legacy_django.items.models import Item, ItemOption


def _with_names(queryset: QuerySet[Item]) -> QuerySet[Item]:
    return queryset.select_related("brand", "category")


def sale_price(price: int, discount_rate: int) -> int:
    return price - price * discount_rate // 100


def item_summary(item: Item) -> dict[str, Any]:
    """The item shape every list uses. ``item`` should come from a ``_with_names`` queryset."""
    return {
        "id": item.pk,
        "name": item.name,
        "brand": item.brand.name,
        "category": item.category.slug,
        "price": item.price,
        "discount_rate": item.discount_rate,
        "sale_price": sale_price(item.price, item.discount_rate),
        "rating_average": average(item.rating_total, item.review_count),
        "review_count": item.review_count,
        "in_stock": item.stock > 0,
    }


def item_exists(item_id: int) -> bool:
    return Item.objects.filter(pk=item_id).exists()


def item_get(item_id: int) -> Item:
    item = Item.objects.filter(pk=item_id).first()
    if item is None:
        raise NotFound(f"Item {item_id} does not exist.")
    return item


def item_summaries(item_ids: Iterable[int]) -> list[dict[str, Any]]:
    """Summaries in the order of ``item_ids``."""
    ids = list(item_ids)
    by_id = {item.pk: item for item in _with_names(Item.objects.filter(pk__in=ids))}
    return [item_summary(by_id[item_id]) for item_id in ids if item_id in by_id]


def item_list(page: PageRequest, category: str | None) -> tuple[list[dict[str, Any]], int]:
    queryset = Item.objects.all()
    if category:
        queryset = queryset.filter(category__slug=category)
    total = queryset.count()
    rows = _with_names(queryset.order_by("id"))[page.offset : page.offset + page.size]
    return [item_summary(item) for item in rows], total


def item_detail(item_id: int) -> dict[str, Any]:
    item = _with_names(Item.objects.filter(pk=item_id)).first()
    if item is None:
        raise NotFound(f"Item {item_id} does not exist.")
    options = [
        {"id": option.pk, "name": option.name, "stock": option.stock}
        for option in item.options.order_by("id")
    ]
    return {**item_summary(item), "stock": item.stock, "options": options}


def in_stock_candidates(*, category_id: int | None = None) -> list[tuple[int, int, int, int, int]]:
    """(id, category_id, brand_id, price, review_count) of every item with stock, for rankers."""
    queryset = Item.objects.filter(stock__gt=0)
    if category_id is not None:
        queryset = queryset.filter(category_id=category_id)
    return list(queryset.values_list("id", "category_id", "brand_id", "price", "review_count"))


def option_item_prices(option_ids: Iterable[int]) -> dict[int, tuple[int, int]]:
    """option id -> (its item's id, the item's sale price) for the options that exist."""
    rows = ItemOption.objects.filter(pk__in=list(option_ids)).values_list(
        "id", "item_id", "item__price", "item__discount_rate"
    )
    return {option_id: (item_id, sale_price(price, rate)) for option_id, item_id, price, rate in rows}


def item_snapshots(item_ids: Iterable[int]) -> dict[int, Snapshot]:
    """The catalog state of the items among ``item_ids`` that exist (``events.state.snapshots``' twin):
    the item row with its event version first, then its options and its reviews per rating (through
    the reverse relation: this app sits below reviews and imports nothing of it)."""
    ids = list(item_ids)
    rows = list(_with_names(Item.objects.filter(pk__in=ids)))
    found = [item.pk for item in rows]
    options: dict[int, list[tuple[int, str, int]]] = defaultdict(list)
    for item_id, option_id, name, stock in ItemOption.objects.filter(item_id__in=found).values_list(
        "item_id", "id", "name", "stock"
    ):
        options[item_id].append((option_id, name, stock))
    counts: dict[int, dict[int, int]] = defaultdict(dict)
    per_rating = (
        Item.objects.filter(pk__in=found, reviews__isnull=False)
        .values_list("id", "reviews__rating")
        .annotate(n=Count("reviews"))
        .order_by()
    )
    for item_id, rating, n in per_rating:
        counts[item_id][rating] = n
    return {
        item.pk: Snapshot(
            state=ItemState(
                item_id=item.pk,
                name=item.name,
                brand=item.brand.name,
                category=item.category.slug,
                price=item.price,
                discount_rate=item.discount_rate,
                options=sorted(options[item.pk]),
                review_count=item.review_count,
                rating_total=item.rating_total,
                counts=counts[item.pk],
            ),
            version=item.event_version,
            updated_at=item.changed_at or item.created_at,
        )
        for item in rows
    }
