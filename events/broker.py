"""RabbitMQ, as the relay and the consumers use it (aio-pika; ADR 0018).

Topology: one durable direct exchange (``EVENTS_EXCHANGE``); for each consumer group and partition a
durable queue ``<exchange>.<group>.p<n>`` bound with routing key ``p<n>`` and declared with
``x-single-active-consumer``: the broker delivers a queue to one consumer at a time and hands it to a
standby when that one goes away, so each partition is consumed in order. Messages are persistent;
the relay's channel has publisher confirms, and a message no queue took is returned as an error.
"""

from __future__ import annotations

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractExchange, AbstractQueue

from events.settings import EventSettings
from events.stream import Event, queue_name, routing_key

CONNECT_TIMEOUT = 5.0


async def connect(settings: EventSettings) -> AbstractConnection:
    """A plain (not self-reconnecting) connection: the relay and the consumers reconnect themselves,
    from what the database says, after any failure."""
    return await aio_pika.connect(settings.broker_url, timeout=CONNECT_TIMEOUT)


async def declare(channel: AbstractChannel, settings: EventSettings, group: str) -> list[AbstractQueue]:
    """The exchange and ``group``'s partition queues (idempotent); the queues by partition."""
    exchange = await declare_exchange(channel, settings)
    queues = []
    for partition in range(settings.partitions):
        queue = await channel.declare_queue(
            queue_name(settings.exchange, group, partition),
            durable=True,
            arguments={"x-single-active-consumer": True},
        )
        await queue.bind(exchange, routing_key=routing_key(partition))
        queues.append(queue)
    return queues


async def declare_exchange(channel: AbstractChannel, settings: EventSettings) -> AbstractExchange:
    return await channel.declare_exchange(settings.exchange, aio_pika.ExchangeType.DIRECT, durable=True)


def message(event: Event) -> aio_pika.Message:
    return aio_pika.Message(
        event.to_bytes(),
        content_type="application/json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=event.event_id,
        type=event.type,
        headers={"key": event.key, "version": event.version},
    )
