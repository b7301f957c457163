"""Writes that append events, as the backends make them: orders taking stock (options by id, then the
item, then the event, as the monolith's order does) and reviews through the reviews service's code."""

from __future__ import annotations

import asyncio
import random

from sqlalchemy import select, update

from events import outbox, payloads
from events.db import Database
from services.common import db as service_db
from services.common.errors import Conflict
from services.reviews import queries
from shopdb.tables import item_options as options
from shopdb.tables import items


async def _order(db: Database, option_id: int, item_id: int) -> bool:
    async with db.write() as conn:
        taken = await conn.execute(
            update(options)
            .where(options.c.id == option_id, options.c.stock >= 1)
            .values(stock=options.c.stock - 1)
        )
        if taken.rowcount != 1:
            return False
        await conn.execute(update(items).where(items.c.id == item_id).values(stock=items.c.stock - 1))
        await outbox.append(
            conn,
            item_id=item_id,
            event_type=payloads.STOCK_CHANGED,
            build=payloads.stock_changed,
            now=db.now(),
        )
    return True


async def _reviews(database_url: str, count: int, rng: random.Random) -> int:
    db = service_db.Database(database_url)
    written = 0
    try:
        while written < count:
            user_id, item_id = rng.randint(6, 65), rng.randint(1, 40)
            try:
                await queries.review_create(db, user_id, item_id, rng.randint(1, 5), "events test")
                written += 1
            except Conflict:
                continue
    finally:
        await db.dispose()
    return written


async def _orders(database_url: str, count: int, rng: random.Random) -> int:
    db = Database(database_url)
    try:
        async with db.read() as conn:
            stocked = (
                await conn.execute(select(options.c.id, options.c.item_id).where(options.c.stock > 0))
            ).all()
        placed = 0
        for _ in range(count):
            option_id, item_id = rng.choice(stocked)
            placed += await _order(db, option_id, item_id)
        return placed
    finally:
        await db.dispose()


async def _both(database_url: str, orders: int, reviews: int, seed: int) -> int:
    rng = random.Random(seed)  # the writers interleave, on a few items, so each item gets many versions
    placed, written = await asyncio.gather(
        _orders(database_url, orders, random.Random(rng.random())),
        _reviews(database_url, reviews, random.Random(rng.random())),
    )
    return placed + written


def write(database_url: str, *, orders: int, reviews: int, seed: int = 1) -> int:
    """Place ``orders`` one-unit orders and create ``reviews`` reviews, interleaved; returns how many
    events were written."""
    return asyncio.run(_both(database_url, orders, reviews, seed))
