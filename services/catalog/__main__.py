"""``python -m services.catalog``: serve the catalog service (uvicorn, uvloop, httptools);
``python -m services.catalog rebuild [--once]``: backfill the view from the source tables, then follow
the stream (run the catalog consumer; ``--once`` stops after the backfill);
``python -m services.catalog check``: compare every item's document with its source tables (exit 1 on
a difference; run it once the stream is drained)."""

from __future__ import annotations

import argparse
import asyncio
import sys

from events import catalog
from events.__main__ import main as events_main
from events.db import Database
from events.settings import load_settings
from services.common.serve import serve


async def _rebuild(database_url: str) -> int:
    db = Database(database_url)
    try:
        return await catalog.rebuild(db)
    finally:
        await db.dispose()


async def _check(database_url: str) -> list[catalog.Mismatch]:
    db = Database(database_url)
    try:
        return await catalog.check(db)
    finally:
        await db.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.catalog", description=__doc__)
    commands = parser.add_subparsers(dest="command")
    rebuild = commands.add_parser("rebuild", help="backfill the view, then follow the stream")
    rebuild.add_argument("--once", action="store_true", help="stop after the backfill")
    commands.add_parser("check", help="compare the view with the source tables")
    args = parser.parse_args(argv)
    if args.command is None:
        serve("catalog")
        return 0
    settings = load_settings()
    if args.command == "check":
        problems = asyncio.run(_check(settings.database_url))
        for problem in problems:
            print(problem)
        print(f"{len(problems)} item(s) differ from their source tables" if problems else "the view matches")
        return 1 if problems else 0
    count = asyncio.run(_rebuild(settings.database_url))
    print(f"rebuilt the catalog view: {count} items", flush=True)
    if args.once:
        return 0
    if settings.embedded:
        print("no BROKER_URL: the relay (python -m events relay) applies the stream in this mode", flush=True)
        return 0
    return events_main(["consume", "catalog"])


if __name__ == "__main__":
    sys.exit(main())
