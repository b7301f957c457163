"""``python -m events consume <group>``: a consumer group's partition queues → a handler, at least once.

One channel per partition queue, ``prefetch`` messages in flight on each. A worker per partition takes
what has arrived (up to ``EVENTS_BATCH``), hands the batch to the handler, which commits it in one
transaction, and only then acks it (``multiple``: the batch is a prefix of that channel's deliveries).
Killed before the ack, the broker delivers the batch again, to this consumer once it is back or to a
standby: the handler must be idempotent (the catalog's is, by version). The queues are
single-active-consumer, so a second process of the same group waits as a hot standby.

A connection failure (the broker restarts, the network drops) ends the session: unacked messages go
back to their queues, and the consumer reconnects with a backoff.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Awaitable, Callable, Sequence

from aio_pika.abc import AbstractIncomingMessage

from events import broker
from events.relay import RETRY_SECONDS, pause
from events.settings import EventSettings
from events.stream import Event, MalformedEvent

logger = logging.getLogger("events.consumer")
Handler = Callable[[Sequence[Event]], Awaitable[None]]


async def _work(
    inbox: asyncio.Queue[AbstractIncomingMessage], handler: Handler, settings: EventSettings
) -> None:
    while True:
        batch = [await inbox.get()]
        while len(batch) < settings.batch_size and not inbox.empty():
            batch.append(inbox.get_nowait())
        events = []
        for message in batch:
            try:
                events.append(Event.from_bytes(message.body))
            except MalformedEvent as exc:
                logger.error("consumer: dropping a malformed message: %s", exc)
        await handler(events)
        if settings.fault == "kill-before-ack":
            logger.warning("EVENTS_FAULT=kill-before-ack: killing this process (SIGKILL)")
            os.kill(os.getpid(), signal.SIGKILL)
        await batch[-1].ack(multiple=True)


async def _session(settings: EventSettings, group: str, handler: Handler) -> None:
    connection = await broker.connect(settings)
    closed = asyncio.Event()
    connection.close_callbacks.add(lambda *_: closed.set())
    workers: list[asyncio.Task[None]] = []
    try:
        for partition in range(settings.partitions):
            channel = await connection.channel()
            await channel.set_qos(prefetch_count=settings.batch_size)
            queue = (await broker.declare(channel, settings, group))[partition]
            inbox: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
            await queue.consume(inbox.put)
            workers.append(asyncio.create_task(_work(inbox, handler, settings)))
        logger.info(
            "consumer %s: consuming %s.%s.p0..p%d", group, settings.exchange, group, settings.partitions - 1
        )
        watch = asyncio.create_task(closed.wait())
        done, _ = await asyncio.wait([watch, *workers], return_when=asyncio.FIRST_COMPLETED)
        watch.cancel()
        for task in done:
            if task is not watch and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
        raise ConnectionError("the broker connection closed")
    finally:
        for worker in workers:
            worker.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        if not connection.is_closed:
            await connection.close()


async def run(settings: EventSettings, group: str, handler: Handler, stop: asyncio.Event) -> None:
    attempt = 0
    while not stop.is_set():
        session = asyncio.create_task(_session(settings, group, handler))
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait([session, stopping], return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if stop.is_set():
            session.cancel()
            await asyncio.gather(session, return_exceptions=True)
            return
        try:
            session.result()
            attempt = 0
        except Exception as exc:  # the broker or the database failed: unacked messages come again
            delay = RETRY_SECONDS[min(attempt, len(RETRY_SECONDS) - 1)]
            attempt += 1
            logger.warning("consumer %s: %r; reconnecting in %.1fs", group, exc, delay)
            await pause(stop, delay)
