"""The events tests: seeded database copies (SQLite, or PostgreSQL when DATABASE_URL names it), the
real RabbitMQ, and the relay and consumers as real subprocesses."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest

from events import catalog
from events.db import Database
from tests.support.rabbit import Topology
from tests.support.servers import is_postgres, seeded_copies

COPIES = ("apply", "happy", "relay_crash", "consumer_crash", "cut", "embedded", "rebuild")


@pytest.fixture(scope="session")
def databases(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """One seeded database per test that writes, {name: DATABASE_URL}."""
    work = tmp_path_factory.mktemp("events")
    database_url = os.environ.get("DATABASE_URL", "")
    with seeded_copies(work, COPIES, database_url if is_postgres(database_url) else None, "events") as urls:
        yield urls


def run(coroutine_function: Callable[[Database], object], database_url: str) -> object:
    """Run ``coroutine_function(db)`` on a fresh engine, in a loop of its own."""

    async def main() -> object:
        db = Database(database_url)
        try:
            return await coroutine_function(db)  # type: ignore[misc]
        finally:
            await db.dispose()

    return asyncio.run(main())


def events_env(database_url: str, topology: Topology | None, **extra: str) -> dict[str, str]:
    env = {**os.environ, "DATABASE_URL": database_url, "LOG_LEVEL": "INFO", "EVENTS_BATCH": "50"}
    env.pop("BROKER_URL", None)
    if topology is not None:
        env |= {
            "BROKER_URL": topology.url,
            "EVENTS_EXCHANGE": topology.exchange,
            "EVENTS_PARTITIONS": str(topology.partitions),
            "EVENTS_GROUPS": ",".join(topology.groups),
        }
    return env | extra


@contextlib.contextmanager
def process(args: list[str], env: Mapping[str, str], log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``python -m events <args>`` until the block ends (SIGTERM, then SIGKILL)."""
    with log_path.open("ab") as log:
        child = subprocess.Popen(
            [sys.executable, "-m", "events", *args], env=dict(env), stdout=log, stderr=subprocess.STDOUT
        )
        try:
            yield child
        finally:
            if child.poll() is None:
                child.terminate()
                try:
                    child.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    child.kill()
                    child.wait()


def pending(database_url: str) -> int:
    return int(run(catalog.pending, database_url))  # type: ignore[call-overload]


def mismatches(database_url: str) -> list[catalog.Mismatch]:
    return list(run(catalog.check, database_url))  # type: ignore[call-overload]


def rebuild(database_url: str) -> None:
    run(catalog.rebuild, database_url)
