"""The catalog view: one document per item in ``catalog_item``, kept by the ``catalog`` consumer.

``apply`` takes a batch of events and, for each item, upserts the document its newest event carries,
only where the stored version is older: ``INSERT … ON CONFLICT DO UPDATE … WHERE version <
excluded.version`` is the whole idempotency rule (a duplicate, a redelivery, or an event older than a
snapshot changes nothing; no row is read first). ``rebuild`` backfills every item from the source
tables at the version each item has, with the same statement (``<=``), so it can run while the
consumer runs: whichever writes last, the newer version stays, and events after the snapshot still
apply. ``check`` compares every item's document with what the source tables say.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from events.db import Database
from events.documents import Document, document
from events.payloads import Snapshot, state_of
from events.schema import catalog_items, ensure_view
from events.state import snapshots
from events.stream import Event
from shopdb.tables import items, outbox

CHUNK = 500


def dumps(doc: Document) -> str:
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":"))


def _row(item_id: int, version: int, doc: Document, updated_at: Any) -> dict[str, Any]:
    return {"item_id": item_id, "version": version, "document": dumps(doc), "updated_at": updated_at}


async def _upsert(db: Database, conn: AsyncConnection, rows: list[dict[str, Any]], *, or_equal: bool) -> None:
    if not rows:
        return
    insert = db.insert(catalog_items).values(rows)
    newer = (
        catalog_items.c.version <= insert.excluded.version
        if or_equal
        else catalog_items.c.version < insert.excluded.version
    )
    await conn.execute(
        insert.on_conflict_do_update(
            index_elements=[catalog_items.c.item_id],
            set_={
                "version": insert.excluded.version,
                "document": insert.excluded.document,
                "updated_at": insert.excluded.updated_at,
            },
            where=newer,
        )
    )


def newest_per_item(events: Sequence[Event]) -> list[Event]:
    newest: dict[int, Event] = {}
    for event in events:
        if event.key not in newest or event.version > newest[event.key].version:
            newest[event.key] = event
    return sorted(newest.values(), key=lambda event: event.key)


async def apply(db: Database, events: Sequence[Event]) -> None:
    """Apply a batch in one transaction (commit before the caller acks it)."""
    rows = [
        _row(
            event.key,
            event.version,
            document(state_of(event.payload["item"]), event.occurred_at),
            event.occurred_at,
        )
        for event in newest_per_item(events)
    ]
    async with db.write() as conn:
        await _upsert(db, conn, rows, or_equal=False)


def snapshot_document(snapshot: Snapshot) -> Document:
    return document(snapshot.state, snapshot.updated_at)


async def _item_ids(db: Database) -> list[int]:
    async with db.read() as conn:
        return list((await conn.execute(select(items.c.id).order_by(items.c.id))).scalars())


async def rebuild(db: Database) -> int:
    """Backfill every item from the source tables; returns how many items were written."""
    await ensure_view(db.engine)
    ids = await _item_ids(db)
    for start in range(0, len(ids), CHUNK):
        async with db.read() as conn:
            found = await snapshots(conn, ids[start : start + CHUNK])
        rows = [
            _row(item_id, snap.version, snapshot_document(snap), snap.updated_at)
            for item_id, snap in found.items()
        ]
        async with db.write() as conn:
            await _upsert(db, conn, rows, or_equal=True)
    return len(ids)


@dataclass(frozen=True, kw_only=True, slots=True)
class Mismatch:
    item_id: int
    view: Document | None
    source: Document
    view_version: int | None
    source_version: int

    def __str__(self) -> str:
        if self.view is None:
            return f"item {self.item_id}: missing from the view (source at version {self.source_version})"
        fields = sorted(key for key in self.source if self.view.get(key) != self.source[key])
        return (
            f"item {self.item_id}: view v{self.view_version} differs from source v{self.source_version} "
            f"in {', '.join(fields) or 'version only'}"
        )


async def check(db: Database) -> list[Mismatch]:
    """Every item's view document against the one its source tables give (run once the stream is
    drained: until then the view may be behind)."""
    ids = await _item_ids(db)
    problems = []
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        async with db.read() as conn:
            source = await snapshots(conn, chunk)
            stored = {
                row.item_id: row
                for row in await conn.execute(
                    select(catalog_items.c.item_id, catalog_items.c.version, catalog_items.c.document).where(
                        catalog_items.c.item_id.in_(chunk)
                    )
                )
            }
        for item_id, snap in source.items():
            expected = snapshot_document(snap)
            row = stored.get(item_id)
            view = json.loads(row.document) if row is not None else None
            if view != expected or (row is not None and row.version != snap.version):
                problems.append(
                    Mismatch(
                        item_id=item_id,
                        view=view,
                        source=expected,
                        view_version=row.version if row is not None else None,
                        source_version=snap.version,
                    )
                )
    return problems


async def pending(db: Database) -> int:
    """Outbox rows not yet published (or, embedded, not yet applied)."""
    async with db.read() as conn:
        query = select(func.count()).select_from(outbox).where(outbox.c.published_at.is_(None))
        return int((await conn.execute(query)).scalar_one())
