"""Recommendations. Rankings are deterministic; docs/api.md states each order and its tie-break.

* home: in-stock items the user has not viewed, by how often the user viewed
  items of the same category (more first), then review count (more first),
  then item id (lower first).
* similar: in-stock items of the same category except the item itself (and,
  for a signed-in user, except items they viewed), same brand first, then
  review count (more first), then price distance (closer first), then id.
* recently viewed: distinct items by last view (newest first), then id (higher first).
"""

from __future__ import annotations

from typing import Any

from legacy_django.activation.selectors import category_affinity, recently_viewed, viewed_item_ids
from legacy_django.common.responses import timestamp
from legacy_django.items.selectors import in_stock_candidates, item_get, item_summaries

DEFAULT_LIMIT = 10
MAX_LIMIT = 50


def recommendations_home(user_id: int, limit: int) -> dict[str, Any]:
    affinity = category_affinity(user_id)
    seen = viewed_item_ids(user_id)
    candidates = [row for row in in_stock_candidates() if row[0] not in seen]
    candidates.sort(key=lambda row: (-affinity[row[1]], -row[4], row[0]))
    chosen = candidates[:limit]
    reasons = {row[0]: "viewed_category" if affinity[row[1]] else "popular" for row in chosen}
    items = [
        {**summary, "reason": reasons[summary["id"]]} for summary in item_summaries(r[0] for r in chosen)
    ]
    return {"items": items, "limit": limit}


def recommendations_similar(item_id: int, viewer_id: int | None, limit: int) -> dict[str, Any]:
    item = item_get(item_id)
    seen = viewed_item_ids(viewer_id) if viewer_id is not None else set()
    candidates = [
        row
        for row in in_stock_candidates(category_id=item.category_id)
        if row[0] != item_id and row[0] not in seen
    ]
    candidates.sort(key=lambda row: (row[2] != item.brand_id, -row[4], abs(row[3] - item.price), row[0]))
    return {"item_id": item_id, "items": item_summaries(row[0] for row in candidates[:limit]), "limit": limit}


def recommendations_recent(user_id: int, limit: int) -> dict[str, Any]:
    views = recently_viewed(user_id, limit)
    viewed_at = {item_id: timestamp(at) for item_id, at in views}
    summaries = item_summaries(item_id for item_id, _ in views)
    return {
        "items": [{**summary, "viewed_at": viewed_at[summary["id"]]} for summary in summaries],
        "limit": limit,
    }
