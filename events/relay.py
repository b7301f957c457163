"""``python -m events relay``: the outbox → the broker, in order per item, at least once.

A loop: read the oldest unpublished rows (``published_at IS NULL``, by id), publish them, and mark
the ones the broker confirmed. Rows are grouped by partition; each partition's rows are published one
after the other, each awaited until the broker confirms it, the partitions side by side. On a failure
only each partition's confirmed prefix is marked; the rest is read and published again after a
reconnect. A crash between publishing and marking therefore sends those events again (duplicates,
which consumers ignore by version), never loses one, and never reorders one item's events: an
item's rows are numbered in commit order under its row lock, and a later one is only ever published
after the earlier ones of the same partition were confirmed.

One relay at a time: on PostgreSQL it holds an advisory lock for as long as it runs (a second relay
waits for it); on SQLite, the embedded default, one machine runs one stack.

Without ``BROKER_URL`` (embedded mode) the relay applies the events to the catalog view itself, in
the same process and with the same rules, and marks them afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence

from aio_pika.abc import AbstractExchange
from sqlalchemy import select, text, update

from events import broker, catalog
from events.db import Database
from events.schema import ensure_view
from events.settings import EventSettings
from events.stream import Event, partition_of, routing_key
from shopdb.tables import outbox

logger = logging.getLogger("events.relay")
RELAY_LOCK = 0x0E7E57  # the advisory lock id of "the relay" on PostgreSQL
TRY_LOCK = f"SELECT pg_try_advisory_lock({RELAY_LOCK})"
RETRY_SECONDS = (0.2, 0.5, 1.0, 2.0, 5.0)

Publish = Callable[[Sequence[Event]], Awaitable[tuple[list[int], BaseException | None]]]


async def pause(stop: asyncio.Event, seconds: float) -> None:
    """Sleep ``seconds``, or less if ``stop`` is set meanwhile."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


async def fetch(db: Database, limit: int) -> list[Event]:
    query = (
        select(outbox.c.id, outbox.c.event_id, outbox.c.type, outbox.c.key, outbox.c.version)
        .add_columns(outbox.c.occurred_at, outbox.c.payload)
        .where(outbox.c.published_at.is_(None))
        .order_by(outbox.c.id)
        .limit(limit)
    )
    async with db.read() as conn:
        rows = (await conn.execute(query)).all()
    return [
        Event(
            event_id=row.event_id,
            type=row.type,
            key=row.key,
            version=row.version,
            occurred_at=row.occurred_at,
            payload=json.loads(row.payload),
            row_id=row.id,
        )
        for row in rows
    ]


async def mark(db: Database, row_ids: Sequence[int]) -> None:
    if row_ids:
        async with db.write() as conn:
            await conn.execute(update(outbox).where(outbox.c.id.in_(row_ids)).values(published_at=db.now()))


def by_partition(events: Sequence[Event], partitions: int) -> dict[int, list[Event]]:
    """The events of each partition, in outbox order."""
    grouped: dict[int, list[Event]] = defaultdict(list)
    for event in events:
        grouped[partition_of(event.key, partitions)].append(event)
    return grouped


def rabbit_publisher(exchange: AbstractExchange, partitions: int) -> Publish:
    async def publish(events: Sequence[Event]) -> tuple[list[int], BaseException | None]:
        confirmed: list[int] = []
        failures: list[BaseException] = []

        async def one_partition(partition: int, ordered: list[Event]) -> None:
            for event in ordered:
                try:
                    await exchange.publish(
                        broker.message(event), routing_key=routing_key(partition), mandatory=True
                    )
                except Exception as exc:  # any failure stops this partition here
                    failures.append(exc)
                    return
                confirmed.append(event.row_id)

        grouped = by_partition(events, partitions)
        await asyncio.gather(*(one_partition(p, ordered) for p, ordered in grouped.items()))
        return confirmed, failures[0] if failures else None

    return publish


def embedded_publisher(db: Database) -> Publish:
    async def publish(events: Sequence[Event]) -> tuple[list[int], BaseException | None]:
        await catalog.apply(db, events)
        return [event.row_id for event in events], None

    return publish


async def drain_embedded(db: Database, batch_size: int = 500) -> int:
    """Apply every unpublished event to the catalog view in-process and mark it, until none is left
    (the embedded mode's work, once; tests and benchmarks use it to settle the view). Returns how many."""
    publish = embedded_publisher(db)
    total = 0
    while events := await fetch(db, batch_size):
        confirmed, _ = await publish(events)
        await mark(db, confirmed)
        total += len(confirmed)
    return total


def _die_here(settings: EventSettings, point: str) -> None:
    if settings.fault == point:
        logger.warning("EVENTS_FAULT=%s: killing this process (SIGKILL)", point)
        os.kill(os.getpid(), signal.SIGKILL)


async def relay_batches(db: Database, settings: EventSettings, publish: Publish, stop: asyncio.Event) -> None:
    """Publish and mark until ``stop`` is set; raises the first publishing failure (after marking
    what was confirmed)."""
    while not stop.is_set():
        events = await fetch(db, settings.batch_size)
        if not events:
            await pause(stop, settings.poll_seconds)
            continue
        confirmed, failure = await publish(events)
        _die_here(settings, "kill-before-mark")
        await mark(db, confirmed)
        if failure is not None:
            raise failure


async def _with_rabbit(db: Database, settings: EventSettings, stop: asyncio.Event) -> None:
    connection = await broker.connect(settings)
    try:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        exchange = await broker.declare_exchange(channel, settings)
        for group in settings.groups:
            await broker.declare(channel, settings, group)
        logger.info(
            "relay: publishing to %s (exchange %s, %d partitions, groups %s)",
            settings.broker_url.rpartition("@")[2],
            settings.exchange,
            settings.partitions,
            ",".join(settings.groups),
        )
        await relay_batches(db, settings, rabbit_publisher(exchange, settings.partitions), stop)
    finally:
        await connection.close()


async def run(settings: EventSettings, stop: asyncio.Event) -> None:
    db = Database(settings.database_url)
    try:
        async with db.read() as lock:  # autocommit: the session holds the lock, not a transaction
            if not db.is_sqlite and not (await lock.execute(text(TRY_LOCK))).scalar():
                logger.info("relay: another relay holds the lock; waiting for it")
                await lock.execute(text(f"SELECT pg_advisory_lock({RELAY_LOCK})"))
            if settings.embedded:
                await ensure_view(db.engine)
                logger.info(
                    "relay: no BROKER_URL, embedded mode: events are applied to the catalog view "
                    "in this process (same idempotency rules); set BROKER_URL to use RabbitMQ"
                )
                await relay_batches(db, settings, embedded_publisher(db), stop)
                return
            attempt = 0
            while not stop.is_set():
                try:
                    await _with_rabbit(db, settings, stop)
                    attempt = 0
                except Exception as exc:  # the broker or the database failed: nothing unmarked is lost
                    delay = RETRY_SECONDS[min(attempt, len(RETRY_SECONDS) - 1)]
                    attempt += 1
                    logger.warning("relay: %r; unmarked events go again in %.1fs", exc, delay)
                    await pause(stop, delay)
    finally:
        await db.dispose()
