"""The events about an item: their types and payloads, built the same way by every backend.

Every event carries the item's whole catalog state after the write, read in the writer's transaction
(event-carried state transfer), next to what happened (the review, the vote). A consumer therefore
needs only the newest version of each item: an event older than, or equal to, what it has changes
nothing, a duplicate is harmless, and a consumer that starts from a snapshot needs only the events
after it (``events.catalog``). The version is the item's ``event_version``, raised by one per event
in the same transaction (``events.outbox``), so one item's events are numbered in commit order.

Standard library only: the monolith imports this module too. ``encode`` is the one JSON form of a
payload (sorted keys), so the event parity tests compare the same bytes from both backends.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

ITEM_CREATED = "item.created"
STOCK_CHANGED = "stock.changed"
REVIEW_CREATED = "review.created"
REVIEW_DELETED = "review.deleted"
REVIEW_HELPFUL = "review.helpful"
TYPES = (ITEM_CREATED, STOCK_CHANGED, REVIEW_CREATED, REVIEW_DELETED, REVIEW_HELPFUL)
RATINGS = range(1, 6)

Payload = dict[str, Any]


@dataclass(frozen=True, kw_only=True, slots=True)
class ItemState:
    """What the catalog shows of an item, as its tables hold it (``options``: (id, name, stock);
    ``counts``: rating → number of reviews)."""

    item_id: int
    name: str
    brand: str
    category: str
    price: int
    discount_rate: int
    options: Sequence[tuple[int, str, int]]
    review_count: int
    rating_total: int
    counts: Mapping[int, int]


@dataclass(frozen=True, kw_only=True, slots=True)
class Snapshot:
    """An item's state as of its event ``version``; ``updated_at``: its ``changed_at`` (its newest
    event), else when it was created."""

    state: ItemState
    version: int
    updated_at: datetime


def new_event_id() -> str:
    return uuid.uuid4().hex


def encode(payload: Mapping[str, Any]) -> str:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def distribution(counts: Mapping[int, int]) -> dict[str, int]:
    """{"1": n, …, "5": n} from rating → count (missing ratings count 0)."""
    return {str(rating): int(counts.get(rating, 0)) for rating in RATINGS}


def state_json(state: ItemState) -> Payload:
    return {
        "id": state.item_id,
        "name": state.name,
        "brand": state.brand,
        "category": state.category,
        "price": state.price,
        "discount_rate": state.discount_rate,
        "options": [
            {"id": o_id, "name": o_name, "stock": left} for o_id, o_name, left in sorted(state.options)
        ],
        "review_count": state.review_count,
        "rating_total": state.rating_total,
        "distribution": distribution(state.counts),
    }


def state_of(item: Mapping[str, Any]) -> ItemState:
    """The inverse of ``state_json`` (a payload's ``item``)."""
    return ItemState(
        item_id=item["id"],
        name=item["name"],
        brand=item["brand"],
        category=item["category"],
        price=item["price"],
        discount_rate=item["discount_rate"],
        options=[(option["id"], option["name"], option["stock"]) for option in item["options"]],
        review_count=item["review_count"],
        rating_total=item["rating_total"],
        counts={int(rating): n for rating, n in item["distribution"].items()},
    )


def item_created(state: ItemState) -> Payload:
    return {"item": state_json(state)}


def stock_changed(state: ItemState) -> Payload:
    """An order took stock of some of the item's options."""
    return {"item": state_json(state)}


def review_changed(state: ItemState, *, review_id: int, rating: int) -> Payload:
    """``review.created`` / ``review.deleted``: the review, and the item after it."""
    return {"item": state_json(state), "review": {"id": review_id, "rating": rating}}


def review_helpful(state: ItemState, *, review_id: int, helpful_count: int) -> Payload:
    """A new helpful vote (a repeated vote changes nothing and writes no event)."""
    return {"item": state_json(state), "review": {"id": review_id, "helpful_count": helpful_count}}
