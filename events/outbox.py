"""Appending an event to the outbox from SQLAlchemy code (the services; the monolith has its own ORM
twin, ``legacy_django.items.services.item_event``): same columns, same version rule, same payload."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncConnection

from events import payloads
from events.state import snapshots
from shopdb.tables import items, outbox

Build = Callable[[payloads.ItemState], payloads.Payload]


async def append(conn: AsyncConnection, *, item_id: int, event_type: str, build: Build, now: datetime) -> int:
    """In the caller's transaction, after its own writes: raise the item's ``event_version`` by one
    (locking its row until commit), set its ``changed_at``, read its state and insert the event
    ``build(state)`` with that version. Returns the version."""
    await conn.execute(
        update(items)
        .where(items.c.id == item_id)
        .values(event_version=items.c.event_version + 1, changed_at=now)
    )
    snapshot = (await snapshots(conn, [item_id]))[item_id]
    await conn.execute(
        outbox.insert().values(
            event_id=payloads.new_event_id(),
            type=event_type,
            key=item_id,
            version=snapshot.version,
            payload=payloads.encode(build(snapshot.state)),
            occurred_at=now,
        )
    )
    return snapshot.version
