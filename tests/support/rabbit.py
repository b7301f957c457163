"""The tests' RabbitMQ: the machine's broker (``TEST_BROKER_URL``), with an exchange and queues of
their own per test (unique names), deleted afterwards. Unreachable: a skip on a developer machine,
a failure under CI=true."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import aio_pika

from events.stream import queue_name
from tests.conftest import require_service

TEST_BROKER_URL = os.environ.get("TEST_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672/")


@dataclass(frozen=True, slots=True)
class Topology:
    url: str
    exchange: str
    partitions: int
    groups: tuple[str, ...]

    def queues(self) -> list[str]:
        return [queue_name(self.exchange, g, p) for g in self.groups for p in range(self.partitions)]

    @property
    def host_port(self) -> tuple[str, int]:
        parts = urlsplit(self.url)
        return parts.hostname or "127.0.0.1", parts.port or 5672

    def through(self, port: int) -> str:
        """The broker URL with another port on 127.0.0.1 (a TCP proxy in front of the broker)."""
        parts = urlsplit(self.url)
        netloc = f"{parts.username}:{parts.password}@127.0.0.1:{port}"
        return parts._replace(netloc=netloc).geturl()


def _reachable(url: str) -> bool:
    parts = urlsplit(url)
    try:
        socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 5672), timeout=1).close()
        return True
    except OSError:
        return False


async def _delete(topology: Topology) -> None:
    connection = await aio_pika.connect(topology.url, timeout=5)
    async with connection:
        channel = await connection.channel()
        for name in topology.queues():
            await channel.queue_delete(name)
        await channel.exchange_delete(topology.exchange)


@contextlib.contextmanager
def rabbit_topology(groups: tuple[str, ...] = ("catalog",), partitions: int = 4) -> Iterator[Topology]:
    require_service(_reachable(TEST_BROKER_URL), f"RabbitMQ at {TEST_BROKER_URL}")
    topology = Topology(
        url=TEST_BROKER_URL, exchange=f"test.{uuid.uuid4().hex[:12]}", partitions=partitions, groups=groups
    )
    try:
        yield topology
    finally:
        asyncio.run(_delete(topology))


async def _drain(topology: Topology, group: str) -> dict[int, list[bytes]]:
    """Every message waiting in ``group``'s queues (consumed and acked), per partition, in order."""
    found: dict[int, list[bytes]] = {}
    connection = await aio_pika.connect(topology.url, timeout=5)
    async with connection:
        channel = await connection.channel()
        for partition in range(topology.partitions):
            queue = await channel.get_queue(queue_name(topology.exchange, group, partition))
            bodies = []
            while (message := await queue.get(fail=False)) is not None:
                bodies.append(message.body)
                await message.ack()
            found[partition] = bodies
    return found


def drain(topology: Topology, group: str) -> dict[int, list[bytes]]:
    return asyncio.run(_drain(topology, group))
