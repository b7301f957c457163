"""``python -m events relay`` | ``python -m events consume catalog`` | ``python -m events pending``.

Settings from the environment (``events.settings``): ``DATABASE_URL``, ``BROKER_URL`` (unset: the
embedded mode, where the relay applies events itself), ``EVENTS_EXCHANGE``, ``EVENTS_PARTITIONS``,
``EVENTS_GROUPS``, ``EVENTS_BATCH``, ``EVENTS_POLL_SECONDS``. SIGTERM or Ctrl-C stop either loop
between two batches.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Sequence

from events import catalog, consumer, relay
from events.db import Database
from events.schema import ensure_view
from events.settings import EventSettings, SettingsError, load_settings
from events.stream import Event

# The consumer groups this package knows: each one's handler (idempotent, commits before the ack).
GROUPS = {"catalog": catalog.apply}


async def _until_signalled(settings: EventSettings, command: str, group: str | None) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if command == "relay":
        await relay.run(settings, stop)
        return 0
    assert group is not None
    if settings.embedded:
        print(
            "consume: no BROKER_URL: in the embedded mode the relay applies the events itself; "
            "nothing to consume",
            file=sys.stderr,
        )
        return 2
    db = Database(settings.database_url)
    try:
        await ensure_view(db.engine)

        async def handle(events: Sequence[Event]) -> None:
            await GROUPS[group](db, events)

        await consumer.run(settings, group, handle, stop)
    finally:
        await db.dispose()
    return 0


async def _pending(settings: EventSettings) -> int:
    db = Database(settings.database_url)
    try:
        print(await catalog.pending(db))
    finally:
        await db.dispose()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m events", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("relay", help="publish the outbox to the broker (or, embedded, apply it)")
    consume = commands.add_parser("consume", help="run a consumer group")
    consume.add_argument("group", choices=sorted(GROUPS))
    commands.add_parser("pending", help="print how many outbox rows are not published yet")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    try:
        settings = load_settings()
    except SettingsError as exc:
        parser.error(str(exc))
    if args.command == "pending":
        return asyncio.run(_pending(settings))
    return asyncio.run(_until_signalled(settings, args.command, getattr(args, "group", None)))


if __name__ == "__main__":
    sys.exit(main())
