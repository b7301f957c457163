"""Recommendation rankings over the shared tables, by the rules in docs/api.md (same as the monolith)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, exists, func, literal_column, select
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import BindParameter

from services.common.db import Database, Query
from services.common.errors import NotFound
from services.common.render import average, timestamp
from shopdb.tables import brands, categories, items, view_history

DEFAULT_LIMIT = 10
MAX_LIMIT = 50

# What an item summary needs, in the order ``_summary`` reads them. ``stock`` is the item's own column,
# kept equal to the sum of its options' stock by every write (ADR 0015), as the monolith reads it.
_SUMMARY_COLUMNS = (
    items.c.id,
    items.c.name,
    brands.c.name.label("brand"),
    categories.c.slug.label("category"),
    items.c.price,
    items.c.discount_rate,
    items.c.rating_total,
    items.c.review_count,
    items.c.stock,
)
_SUMMARY_FROM = items.join(brands, brands.c.id == items.c.brand_id).join(
    categories, categories.c.id == items.c.category_id
)


def _summary(row: Sequence[Any]) -> dict[str, Any]:
    """A row that starts with ``_SUMMARY_COLUMNS``."""
    price, discount_rate, review_count = row[4], row[5], row[7]
    return {
        "id": row[0],
        "name": row[1],
        "brand": row[2],
        "category": row[3],
        "price": price,
        "discount_rate": discount_rate,
        "sale_price": price - price * discount_rate // 100,
        "rating_average": average(row[6], review_count),
        "review_count": review_count,
        "in_stock": row[8] > 0,
    }


async def _summaries(conn: AsyncConnection, item_ids: Iterable[int]) -> list[dict[str, Any]]:
    """Item summaries in the order of ``item_ids``."""
    ids = list(item_ids)
    if not ids:
        return []
    query = select(*_SUMMARY_COLUMNS).select_from(_SUMMARY_FROM).where(items.c.id.in_(ids))
    by_id = {row[0]: row for row in await conn.execute(query)}
    return [_summary(by_id[item_id]) for item_id in ids if item_id in by_id]


async def _candidates(
    conn: AsyncConnection, category_id: int | None = None
) -> list[tuple[int, int, int, int, int]]:
    """(id, category_id, brand_id, price, review_count) of every item with stock."""
    query = select(
        items.c.id, items.c.category_id, items.c.brand_id, items.c.price, items.c.review_count
    ).where(items.c.stock > 0)
    if category_id is not None:
        query = query.where(items.c.category_id == category_id)
    return [(row[0], row[1], row[2], row[3], row[4]) for row in await conn.execute(query)]


async def _viewed_item_ids(conn: AsyncConnection, user_id: int) -> set[int]:
    query = select(view_history.c.item_id).where(view_history.c.user_id == user_id).distinct()
    return set((await conn.execute(query)).scalars())


def _home_query() -> Query:
    """recommendations.home ranked in the database, in one round trip: in-stock items the user never
    viewed, by the user's views of the item's category (more first), review count (more first), id;
    each row is the item's summary columns and then that view count (0: ``popular``).

    Shaped for PostgreSQL's planner (ADR 0021): the viewed items' categories are looked up by primary
    key (a handful of rows) rather than joined to every item, and the brand and category names are
    joined to the ranked page only."""
    user_id: BindParameter[int] = bindparam("user_id")
    viewed_item = items.alias("viewed_item")
    viewed_category = (
        select(viewed_item.c.category_id).where(viewed_item.c.id == view_history.c.item_id).scalar_subquery()
    )
    affinity = (
        select(viewed_category.label("category_id"), func.count().label("views"))
        .where(view_history.c.user_id == user_id)
        .group_by(literal_column("category_id"))  # the output column (view_history has none of that name)
        .subquery("affinity")
    )
    views = func.coalesce(affinity.c.views, literal_column("0")).label("views")
    viewed = exists().where(view_history.c.user_id == user_id, view_history.c.item_id == items.c.id)
    ranked = (
        select(
            items.c.id,
            items.c.name,
            items.c.brand_id,
            items.c.category_id,
            items.c.price,
            items.c.discount_rate,
            items.c.rating_total,
            items.c.review_count,
            items.c.stock,
            views,
        )
        .select_from(items.outerjoin(affinity, affinity.c.category_id == items.c.category_id))
        .where(items.c.stock > literal_column("0"), ~viewed)
        .order_by(views.desc(), items.c.review_count.desc(), items.c.id)
        .limit(bindparam("limit"))
        .subquery("ranked")
    )
    return Query(
        select(
            ranked.c.id,
            ranked.c.name,
            brands.c.name.label("brand"),
            categories.c.slug.label("category"),
            ranked.c.price,
            ranked.c.discount_rate,
            ranked.c.rating_total,
            ranked.c.review_count,
            ranked.c.stock,
            ranked.c.views,
        )
        .select_from(
            ranked.join(brands, brands.c.id == ranked.c.brand_id).join(
                categories, categories.c.id == ranked.c.category_id
            )
        )
        .order_by(ranked.c.views.desc(), ranked.c.review_count.desc(), ranked.c.id)
    )


_HOME = _home_query()


async def recommendations_home(db: Database, user_id: int, limit: int) -> dict[str, Any]:
    rows = await db.fetch(_HOME, {"user_id": user_id, "limit": limit})
    chosen = [{**_summary(row), "reason": "viewed_category" if row[9] else "popular"} for row in rows]
    return {"items": chosen, "limit": limit}


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
