"""The tables the events code reads and writes (SQLAlchemy Core).

The monolith's migrations own the outbox and the item columns (``items_outboxevent``,
``items_item.event_version``/``changed_at``; ADR 0001, 0018); only the columns used here are declared,
as ``services/common/tables.py`` does for the services. The catalog view (``catalog_item``) belongs to
the catalog consumer: ``ensure_view`` creates it (``CREATE TABLE IF NOT EXISTS``), like the payments
service's own tables.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, DateTime, Integer, MetaData, SmallInteger, String, Table, Text
from sqlalchemy.ext.asyncio import AsyncEngine

metadata = MetaData()

outbox = Table(
    "items_outboxevent",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("event_id", String(32)),
    Column("type", String(40)),
    Column("key", BigInteger),
    Column("version", BigInteger),
    Column("payload", Text),
    Column("occurred_at", DateTime(timezone=True)),
    Column("published_at", DateTime(timezone=True)),
)
items = Table(
    "items_item",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("name", String(200)),
    Column("brand_id", BigInteger),
    Column("category_id", BigInteger),
    Column("price", Integer),
    Column("discount_rate", SmallInteger),
    Column("review_count", Integer),
    Column("rating_total", Integer),
    Column("stock", Integer),
    Column("created_at", DateTime(timezone=True)),
    Column("event_version", BigInteger),
    Column("changed_at", DateTime(timezone=True)),
)
brands = Table("items_brand", metadata, Column("id", BigInteger, primary_key=True), Column("name", String))
categories = Table(
    "items_category", metadata, Column("id", BigInteger, primary_key=True), Column("slug", String)
)
options = Table(
    "items_itemoption",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("item_id", BigInteger),
    Column("name", String(100)),
    Column("stock", Integer),
)
reviews = Table(
    "reviews_review",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("item_id", BigInteger),
    Column("rating", SmallInteger),
)

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
