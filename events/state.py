"""Reading items' catalog state from the shared tables (SQLAlchemy; the monolith's ORM twin is
``legacy_django.items.selectors.item_snapshots``): for a writer's event, and for a snapshot."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from events.payloads import ItemState, Snapshot
from shopdb.tables import brands, categories, items, reviews
from shopdb.tables import item_options as options


async def snapshots(conn: AsyncConnection, item_ids: Sequence[int]) -> dict[int, Snapshot]:
    """The items among ``item_ids`` that exist. The item row (with its version) is read first, so
    every other part is at least as new as the version says; a newer event sets them again."""
    if not item_ids:
        return {}
    rows = (
        await conn.execute(
            select(
                items.c.id,
                items.c.name,
                brands.c.name.label("brand"),
                categories.c.slug,
                items.c.price,
                items.c.discount_rate,
                items.c.review_count,
                items.c.rating_total,
                items.c.event_version,
                items.c.changed_at,
                items.c.created_at,
            )
            .select_from(
                items.join(brands, brands.c.id == items.c.brand_id).join(
                    categories, categories.c.id == items.c.category_id
                )
            )
            .where(items.c.id.in_(item_ids))
        )
    ).all()
    found = [row.id for row in rows]
    per_item: dict[int, list[tuple[int, str, int]]] = defaultdict(list)
    option_rows = await conn.execute(
        select(options.c.item_id, options.c.id, options.c.name, options.c.stock).where(
            options.c.item_id.in_(found)
        )
    )
    for item_id, option_id, name, stock in option_rows:
        per_item[item_id].append((option_id, name, stock))
    counts: dict[int, dict[int, int]] = defaultdict(dict)
    count_rows = await conn.execute(
        select(reviews.c.item_id, reviews.c.rating, func.count())
        .where(reviews.c.item_id.in_(found))
        .group_by(reviews.c.item_id, reviews.c.rating)
    )
    for item_id, rating, n in count_rows:
        counts[item_id][rating] = n
    return {
        row.id: Snapshot(
            state=ItemState(
                item_id=row.id,
                name=row.name,
                brand=row.brand,
                category=row.slug,
                price=row.price,
                discount_rate=row.discount_rate,
                options=sorted(per_item[row.id]),
                review_count=row.review_count,
                rating_total=row.rating_total,
                counts=counts[row.id],
            ),
            version=row.event_version,
            updated_at=row.changed_at or row.created_at,
        )
        for row in rows
    }
