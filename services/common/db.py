"""Async access to the shared database (SQLAlchemy 2 Core; aiosqlite or asyncpg), owned by the app's lifespan.

Reads run in autocommit, one statement at a time, as Django runs the monolith's
queries (and without a BEGIN/ROLLBACK round trip per request).  SQLite is shared with
the monolith's processes, so write transactions start with ``BEGIN IMMEDIATE`` (take
the write lock up front and wait for it, instead of failing half-way when another
process wrote first).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Table, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

_IMMEDIATE = "shop_begin_immediate"
_AUTOCOMMIT = "shop_autocommit"


def async_url(database_url: str) -> str:
    """``DATABASE_URL`` as the monolith reads it → the async driver's URL."""
    scheme, sep, rest = database_url.partition("://")
    if not sep:
        raise ValueError(f"DATABASE_URL must look like scheme://..., got {database_url!r}")
    if scheme == "sqlite":
        return f"sqlite+aiosqlite://{rest}"
    if scheme in {"postgres", "postgresql", "pgsql", "postgresql+psycopg", "postgresql+asyncpg"}:
        return f"postgresql+asyncpg://{rest}"
    raise ValueError(f"unsupported database scheme {scheme!r} (use sqlite or postgres)")


def _sqlite_engine(url: str) -> AsyncEngine:
    engine = create_async_engine(url, connect_args={"timeout": 20})

    @event.listens_for(engine.sync_engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        # Let us issue BEGIN ourselves (the driver's implicit BEGIN cannot be IMMEDIATE).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=20000")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _begin(connection: Any) -> None:
        options = connection.get_execution_options()
        if options.get(_AUTOCOMMIT):
            return  # the driver runs each statement on its own
        connection.exec_driver_sql("BEGIN IMMEDIATE" if options.get(_IMMEDIATE) else "BEGIN")

    return engine


class Database:
    def __init__(self, database_url: str) -> None:
        url = async_url(database_url)
        self.is_sqlite = url.startswith("sqlite")
        if self.is_sqlite:
            self.engine = _sqlite_engine(url)
            self._reader = self.engine.execution_options(**{_AUTOCOMMIT: True})
            self._writer = self.engine.execution_options(**{_IMMEDIATE: True})
        else:
            self.engine = create_async_engine(url, pool_size=10, max_overflow=10)
            self._reader = self.engine.execution_options(isolation_level="AUTOCOMMIT")
            self._writer = self.engine

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """Autocommit: each statement sees the latest committed data."""
        async with self._reader.connect() as connection:
            yield connection

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """One transaction; committed when the block ends, rolled back if it raises."""
        async with self._writer.begin() as connection:
            yield connection

    def now(self) -> datetime:
        """The current time as the monolith stores it (naive UTC in SQLite, aware in PostgreSQL)."""
        current = datetime.now(UTC)
        return current.replace(tzinfo=None) if self.is_sqlite else current

    def insert_ignoring_conflicts(self, table: Table) -> Any:
        """``INSERT … ON CONFLICT DO NOTHING`` in this database's dialect."""
        dialect_insert = sqlite.insert if self.is_sqlite else postgresql.insert
        return dialect_insert(table).on_conflict_do_nothing()

    async def dispose(self) -> None:
        await self.engine.dispose()
