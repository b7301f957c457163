"""The database the events code runs on: the shared one (``DATABASE_URL``), through SQLAlchemy's async
engine, with the same rules as the services' access (ADR 0004, shopdb/engine.py): reads in
autocommit, and on SQLite write transactions that begin ``IMMEDIATE`` (wait for the monolith's writer
instead of failing half-way).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from shopdb.engine import AUTOCOMMIT, sqlite_engine, stored_now


def async_url(database_url: str) -> str:
    """``DATABASE_URL`` as the monolith reads it → the async driver's URL."""
    scheme, sep, rest = database_url.partition("://")
    if scheme == "sqlite" and sep:
        return f"sqlite+aiosqlite://{rest}"
    if scheme in {"postgres", "postgresql"} and sep:
        return f"postgresql+asyncpg://{rest}"
    raise ValueError(f"DATABASE_URL must be sqlite:///… or postgres://…, got {database_url!r}")


class Database:
    def __init__(self, database_url: str, *, pool_size: int = 5) -> None:
        url = async_url(database_url)
        self.is_sqlite = url.startswith("sqlite")
        if self.is_sqlite:
            self.engine = sqlite_engine(url)
            self._reader = self.engine.execution_options(**{AUTOCOMMIT: True})
        else:
            self.engine = create_async_engine(url, pool_size=pool_size, max_overflow=pool_size)
            self._reader = self.engine.execution_options(isolation_level="AUTOCOMMIT")

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        async with self._reader.connect() as connection:
            yield connection

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """One transaction; committed when the block ends, rolled back if it raises."""
        async with self.engine.begin() as connection:
            yield connection

    def now(self) -> datetime:
        """The current time as the monolith stores it (naive UTC in SQLite, aware in PostgreSQL)."""
        return stored_now(self.is_sqlite)

    def insert(self, table: Table) -> Any:
        """The dialect's INSERT, with ``on_conflict_do_nothing`` / ``on_conflict_do_update``."""
        return (sqlite.insert if self.is_sqlite else postgresql.insert)(table)

    async def dispose(self) -> None:
        await self.engine.dispose()
