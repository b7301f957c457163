"""The catalog document of one item: what ``GET /api/v1/catalog/items/{id}`` answers, on every backend.

The monolith assembles it from its tables on each request; the catalog view stores it, built by the
same function from the item state an event carries or a snapshot reads (``events.catalog``).
Standard library only.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from events.payloads import ItemState, distribution

Document = dict[str, Any]


def timestamp(value: datetime) -> str:
    """UTC, second precision, ``Z``; naive values (SQLite) are UTC already."""
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def average(total: int, count: int) -> float | None:
    """Rounded half-up to two decimals from integer sums; None when there is nothing to average."""
    if count == 0:
        return None
    return float((Decimal(total) / Decimal(count)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


def sale_price(price: int, discount_rate: int) -> int:
    return price - price * discount_rate // 100


def document(state: ItemState, updated_at: datetime) -> Document:
    """``updated_at``: when the item last changed (its newest event), else when it was created."""
    options = sorted(state.options)
    stock = sum(left for _, _, left in options)
    return {
        "id": state.item_id,
        "name": state.name,
        "brand": state.brand,
        "category": state.category,
        "price": state.price,
        "discount_rate": state.discount_rate,
        "sale_price": sale_price(state.price, state.discount_rate),
        "options": [{"id": o_id, "name": o_name, "stock": left} for o_id, o_name, left in options],
        "stock": stock,
        "in_stock": stock > 0,
        "review_count": state.review_count,
        "rating_average": average(state.rating_total, state.review_count),
        "distribution": distribution(state.counts),
        "updated_at": timestamp(updated_at),
    }


MAX_IDS = 100
_ID = re.compile(r"[1-9][0-9]{0,17}")


class BadIds(ValueError):
    """``ids`` is malformed; the message is the field's error, the same on every backend."""


def parse_item_ids(raw: str | None) -> list[int]:
    """``?ids=1,2,3`` of ``GET /api/v1/catalog/items``: 1 to 100 distinct item ids (positive, at most
    18 digits, no sign or leading zero), in the order given."""
    if not raw:
        raise BadIds(f"is required: 1 to {MAX_IDS} item ids separated by commas")
    parts = raw.split(",")
    if len(parts) > MAX_IDS:
        raise BadIds(f"must name at most {MAX_IDS} item ids, got {len(parts)}")
    if not all(_ID.fullmatch(part) for part in parts):
        raise BadIds("must be item ids (positive integers) separated by commas")
    ids = [int(part) for part in parts]
    repeated = sorted({item_id for item_id in ids if ids.count(item_id) > 1})
    if repeated:
        raise BadIds(f"names {', '.join(map(str, repeated))} more than once")
    return ids


def missing_message(item_ids: list[int]) -> str:
    """The 404's message for ids that name no item."""
    if len(item_ids) == 1:
        return f"Item {item_ids[0]} does not exist."
    return f"Items {', '.join(map(str, item_ids))} do not exist."
