"""The relay and the catalog consumer as real processes on the machine's RabbitMQ: the view ends equal
to the source tables, and every item's events reach the queues in order, after a relay killed between
publishing and marking, a consumer killed (-9) with a batch committed but not acked or at any moment,
and broker connections cut (through a TCP proxy: the machine's broker keeps running).

The relay declares a second consumer group, ``audit``, that nobody consumes: at the end its queues
hold every message the relay sent, in the order the broker took them, which the tests read."""

from __future__ import annotations

import signal
from collections import defaultdict
from pathlib import Path

import pytest
from sqlalchemy import select

from events.db import Database
from events.stream import Event, partition_of
from shopdb.tables import outbox
from tests.events.conftest import events_env, mismatches, pending, process, rebuild, run
from tests.events.writes import write
from tests.support.rabbit import Topology, drain, rabbit_topology
from tests.support.tcp_proxy import TcpProxy
from tests.support.waiting import eventually

GROUPS = ("catalog", "audit")


@pytest.fixture
def topology() -> object:
    with rabbit_topology(GROUPS) as created:
        yield created


def _outbox_versions(url: str) -> dict[int, list[int]]:
    """Each item's versions in the outbox, in the order they were written."""

    async def read(db: Database) -> dict[int, list[int]]:
        async with db.read() as conn:
            rows = await conn.execute(select(outbox.c.key, outbox.c.version).order_by(outbox.c.id))
            versions: dict[int, list[int]] = defaultdict(list)
            for key, version in rows:
                versions[key].append(version)
            return dict(versions)

    return run(read, url)  # type: ignore[return-value]


def assert_in_order_per_item(topology: Topology, url: str) -> int:
    """Every event of the outbox reached the audit queues, each item's in its partition and in version
    order (a repeat of versions already sent is a duplicate, allowed); returns the duplicates."""
    written = _outbox_versions(url)
    seen: dict[int, int] = {}
    duplicates = 0
    for partition, bodies in drain(topology, "audit").items():
        for body in bodies:
            event = Event.from_bytes(body)
            assert partition_of(event.key, topology.partitions) == partition
            last = seen.get(event.key, written[event.key][0] - 1)
            if event.version <= last:
                duplicates += 1
                continue
            assert event.version == last + 1, f"item {event.key}: v{event.version} after v{last}"
            seen[event.key] = event.version
    assert seen == {key: versions[-1] for key, versions in written.items()}, (
        "an event never reached the broker"
    )
    return duplicates


def _drained(url: str, log: Path, timeout: float = 30) -> None:
    assert eventually(lambda: pending(url) == 0, timeout=timeout), log.read_text()[-3000:]
    assert eventually(lambda: mismatches(url) == [], timeout=timeout, interval=0.2), (
        [str(m) for m in mismatches(url)][:5],
        log.read_text()[-3000:],
    )


def test_the_view_follows_the_writes(databases: dict[str, str], topology: Topology, tmp_path: Path) -> None:
    url = databases["happy"]
    rebuild(url)
    env = events_env(url, topology)
    log = tmp_path / "events.log"
    with process(["consume", "catalog"], env, log), process(["relay"], env, log):
        write(url, orders=150, reviews=50)
        _drained(url, log)
    assert assert_in_order_per_item(topology, url) == 0


def test_a_relay_killed_between_publish_and_mark_sends_again_and_loses_nothing(
    databases: dict[str, str], topology: Topology, tmp_path: Path
) -> None:
    url = databases["relay_crash"]
    rebuild(url)
    written = write(url, orders=120, reviews=40)
    env = events_env(url, topology)
    log = tmp_path / "events.log"
    with process(["relay"], env | {"EVENTS_FAULT": "kill-before-mark"}, log) as crashing:
        assert crashing.wait(timeout=30) == -signal.SIGKILL, log.read_text()
    assert pending(url) == written, "the killed relay marked nothing"
    with process(["consume", "catalog"], env, log), process(["relay"], env, log):
        write(url, orders=30, reviews=10, seed=5)
        _drained(url, log)
    assert assert_in_order_per_item(topology, url) >= 1, "the first batch was sent twice"


def test_a_consumer_killed_mid_batch_gets_the_batch_again(
    databases: dict[str, str], topology: Topology, tmp_path: Path
) -> None:
    url = databases["consumer_crash"]
    rebuild(url)
    env = events_env(url, topology)
    log = tmp_path / "events.log"
    with process(["relay"], env, log):
        write(url, orders=200, reviews=50)
        assert eventually(lambda: pending(url) == 0, timeout=30), log.read_text()
        # Committed, not acked: the batch comes again and changes nothing.
        with process(["consume", "catalog"], env | {"EVENTS_FAULT": "kill-before-ack"}, log) as crashing:
            assert crashing.wait(timeout=30) == -signal.SIGKILL, log.read_text()
        assert mismatches(url) != [], "the rest of the stream is still in the queues"
        # Killed from outside at whatever point it has reached, while more events flow.
        with process(["consume", "catalog"], env, log) as consumer:
            write(url, orders=60, reviews=20, seed=6)
            consumer.send_signal(signal.SIGKILL)
            consumer.wait(timeout=10)
        with process(["consume", "catalog"], env, log):
            _drained(url, log)
    assert assert_in_order_per_item(topology, url) == 0


def test_cut_broker_connections_recover_without_loss(
    databases: dict[str, str], topology: Topology, tmp_path: Path
) -> None:
    url = databases["cut"]
    rebuild(url)
    proxy = TcpProxy(topology.host_port)
    try:
        env = events_env(url, topology, BROKER_URL=topology.through(proxy.port))
        relay_log, consumer_log = tmp_path / "relay.log", tmp_path / "consumer.log"
        with process(["consume", "catalog"], env, consumer_log), process(["relay"], env, relay_log):
            write(url, orders=40, reviews=10)
            _drained(url, relay_log)
            proxy.cut()
            write(url, orders=60, reviews=20, seed=7)
            assert eventually(lambda: "unmarked events go again" in relay_log.read_text(), timeout=20)
            assert eventually(lambda: "reconnecting" in consumer_log.read_text(), timeout=20)
            assert pending(url) > 0
            proxy.restore()
            _drained(url, relay_log)
            assert "reconnecting" in consumer_log.read_text()
    finally:
        proxy.close()
    assert assert_in_order_per_item(topology, url) >= 0
