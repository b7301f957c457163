"""Recommendation rankings over the shared tables, by the rules in docs/api.md (same as the monolith)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from services.common.db import Database
from services.common.errors import NotFound
from services.common.render import average, timestamp
from shopdb.tables import brands, categories, item_options, items, view_history

DEFAULT_LIMIT = 10
MAX_LIMIT = 50

_stock = (
    select(func.coalesce(func.sum(item_options.c.stock), 0))
    .where(item_options.c.item_id == items.c.id)
    .scalar_subquery()
)


def _summary(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "brand": row.brand,
        "category": row.category,
        "price": row.price,
        "discount_rate": row.discount_rate,
        "sale_price": row.price - row.price * row.discount_rate // 100,
        "rating_average": average(row.rating_total, row.review_count),
        "review_count": row.review_count,
        "in_stock": row.stock > 0,
    }


async def _summaries(conn: AsyncConnection, item_ids: Iterable[int]) -> list[dict[str, Any]]:
    """Item summaries in the order of ``item_ids``."""
    ids = list(item_ids)
    if not ids:
        return []
    query = (
        select(
            items.c.id,
            items.c.name,
            brands.c.name.label("brand"),
            categories.c.slug.label("category"),
            items.c.price,
            items.c.discount_rate,
            items.c.rating_total,
            items.c.review_count,
            _stock.label("stock"),
        )
        .select_from(
            items.join(brands, brands.c.id == items.c.brand_id).join(
                categories, categories.c.id == items.c.category_id
            )
        )
        .where(items.c.id.in_(ids))
    )
    by_id = {row.id: row for row in await conn.execute(query)}
    return [_summary(by_id[item_id]) for item_id in ids if item_id in by_id]


async def _candidates(
    conn: AsyncConnection, category_id: int | None = None
) -> list[tuple[int, int, int, int, int]]:
    """(id, category_id, brand_id, price, review_count) of every item with stock."""
    query = select(
        items.c.id, items.c.category_id, items.c.brand_id, items.c.price, items.c.review_count
    ).where(_stock > 0)
    if category_id is not None:
        query = query.where(items.c.category_id == category_id)
    return [(row[0], row[1], row[2], row[3], row[4]) for row in await conn.execute(query)]


async def _viewed_item_ids(conn: AsyncConnection, user_id: int) -> set[int]:
    query = select(view_history.c.item_id).where(view_history.c.user_id == user_id).distinct()
    return set((await conn.execute(query)).scalars())


async def recommendations_home(db: Database, user_id: int, limit: int) -> dict[str, Any]:
    async with db.read() as conn:
        affinity_query = (
            select(items.c.category_id, func.count())
            .select_from(view_history.join(items, items.c.id == view_history.c.item_id))
            .where(view_history.c.user_id == user_id)
            .group_by(items.c.category_id)
        )
        affinity: Counter[int] = Counter({category: n for category, n in await conn.execute(affinity_query)})
        seen = await _viewed_item_ids(conn, user_id)
        candidates = [row for row in await _candidates(conn) if row[0] not in seen]
        candidates.sort(key=lambda row: (-affinity[row[1]], -row[4], row[0]))
        chosen = candidates[:limit]
        reasons = {row[0]: "viewed_category" if affinity[row[1]] else "popular" for row in chosen}
        summaries = await _summaries(conn, (row[0] for row in chosen))
    return {"items": [{**summary, "reason": reasons[summary["id"]]} for summary in summaries], "limit": limit}


async def recommendations_similar(
    db: Database, item_id: int, viewer_id: int | None, limit: int
) -> dict[str, Any]:
    async with db.read() as conn:
        query = select(items.c.category_id, items.c.brand_id, items.c.price).where(items.c.id == item_id)
        item = (await conn.execute(query)).first()
        if item is None:
            raise NotFound(f"Item {item_id} does not exist.")
        seen = await _viewed_item_ids(conn, viewer_id) if viewer_id is not None else set()
        candidates = [
            row
            for row in await _candidates(conn, category_id=item.category_id)
            if row[0] != item_id and row[0] not in seen
        ]
        candidates.sort(key=lambda row: (row[2] != item.brand_id, -row[4], abs(row[3] - item.price), row[0]))
        summaries = await _summaries(conn, (row[0] for row in candidates[:limit]))
    return {"item_id": item_id, "items": summaries, "limit": limit}


async def recommendations_recent(db: Database, user_id: int, limit: int) -> dict[str, Any]:
    last_viewed = func.max(view_history.c.viewed_at).label("last_viewed")
    query = (
        select(view_history.c.item_id, last_viewed)
        .where(view_history.c.user_id == user_id)
        .group_by(view_history.c.item_id)
        .order_by(last_viewed.desc(), view_history.c.item_id.desc())
        .limit(limit)
    )
    async with db.read() as conn:
        views: list[tuple[int, datetime]] = [
            (row.item_id, row.last_viewed) for row in await conn.execute(query)
        ]
        summaries = await _summaries(conn, (item_id for item_id, _ in views))
    viewed_at = {item_id: timestamp(at) for item_id, at in views}
    return {
        "items": [{**summary, "viewed_at": viewed_at[summary["id"]]} for summary in summaries],
        "limit": limit,
    }
