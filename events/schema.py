"""The catalog view's table (SQLAlchemy Core); the monolith's tables the events code reads and writes
(the outbox, items, options, reviews) are declared once, in ``shopdb.tables``.

The catalog view (``catalog_item``) belongs to the catalog consumer: ``ensure_view`` creates it
(``CREATE TABLE IF NOT EXISTS``), like the payments service's own tables.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, DateTime, MetaData, Table, Text
from sqlalchemy.ext.asyncio import AsyncEngine

view_metadata = MetaData()
# One row per item: the catalog document (JSON) as of the item's event ``version``.
catalog_items = Table(
    "catalog_item",
    view_metadata,
    Column("item_id", BigInteger, primary_key=True, autoincrement=False),
    Column("version", BigInteger, nullable=False),
    Column("document", Text, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)


async def ensure_view(engine: AsyncEngine) -> None:
    """Create the catalog view's table if it is missing (idempotent, safe to race)."""
    async with engine.begin() as conn:
        await conn.run_sync(lambda sync: view_metadata.create_all(sync, checkfirst=True))
