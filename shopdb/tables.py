"""The monolith's tables, as far as the services and the events code use them.

Only the columns used outside Django are declared; the monolith's migrations own the schema
(ADR 0001, ADR 0018 for the outbox and the item's event columns). Ids and foreign keys are 64-bit,
as Django's BigAutoField makes them.
"""

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
)

metadata = MetaData()

users = Table(
    "users_user",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("display_name", String(100)),
    Column("is_active", Boolean),
)
brands = Table(
    "items_brand", metadata, Column("id", BigInteger, primary_key=True), Column("name", String(100))
)
categories = Table(
    "items_category", metadata, Column("id", BigInteger, primary_key=True), Column("slug", String(50))
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
item_options = Table(
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
    Column("user_id", BigInteger),
    Column("item_id", BigInteger),
    Column("rating", SmallInteger),
    Column("body", Text),
    Column("helpful_count", Integer),
    Column("created_at", DateTime(timezone=True)),
)
helpful_votes = Table(
    "reviews_helpfulvote",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("review_id", BigInteger),
    Column("user_id", BigInteger),
    Column("created_at", DateTime(timezone=True)),
)
view_history = Table(
    "activation_viewhistory",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("user_id", BigInteger),
    Column("item_id", BigInteger),
    Column("viewed_at", DateTime(timezone=True)),
)
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
