"""Async access to the shared database (SQLAlchemy 2 Core; aiosqlite or asyncpg), owned by the app's lifespan.

Reads run in autocommit, one statement at a time, as Django runs the monolith's
queries (and without a BEGIN/ROLLBACK round trip per request).  SQLite is shared with
the monolith's processes, so write transactions start with ``BEGIN IMMEDIATE`` (take
the write lock up front and wait for it, instead of failing half-way when another
process wrote first).

The hot reads are ``Query`` objects (ADR 0021): a Core statement built once with named bind
parameters, compiled once per dialect. On PostgreSQL ``fetch`` sends the compiled text straight to
a pooled asyncpg connection (its statement cache prepares it once per connection), skipping
SQLAlchemy's per-execution work; on SQLite it runs through SQLAlchemy as every other statement.
Either way the rows are indexed by position, in the order of the statement's columns.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import Select, Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from services.common.readpool import ReadPool
from services.common.settings import DEFAULT_DB_POOL_SIZE
from shopdb.engine import AUTOCOMMIT, sqlite_engine, stored_now


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


_PG_DIALECT = PGDialect_asyncpg()  # type: ignore[no-untyped-call]


class Query:
    """A read statement built once, with ``bindparam`` names for what varies per request.

    ``pg_sql`` is its PostgreSQL text (asyncpg's ``$1``, ``$2`` …) and ``pg_args`` the values in that
    order: a name used twice is one ``$n``; a constant of the statement that SQLAlchemy turned into a
    parameter keeps its value; a ``bindparam`` without a value must be given (``KeyError`` if not)."""

    __slots__ = ("_pg_params", "pg_sql", "statement")

    def __init__(self, statement: Select[Any]) -> None:
        self.statement = statement
        compiled = statement.compile(dialect=_PG_DIALECT)
        self.pg_sql = compiled.string
        self._pg_params = tuple(
            (name, compiled.binds[name].required, compiled.binds[name].value)
            for name in compiled.positiontup or ()
        )

    def pg_args(self, params: Mapping[str, Any]) -> list[Any]:
        return [
            params[name] if required else params.get(name, value) for name, required, value in self._pg_params
        ]


class Database:
    def __init__(self, database_url: str, *, read_pool_size: int = DEFAULT_DB_POOL_SIZE) -> None:
        url = async_url(database_url)
        self.is_sqlite = url.startswith("sqlite")
        self._read_pool: ReadPool | None = None
        if self.is_sqlite:
            self.engine = sqlite_engine(url)  # its transactions begin IMMEDIATE
            self._reader = self.engine.execution_options(**{AUTOCOMMIT: True})
        else:
            self.engine = create_async_engine(url, pool_size=10, max_overflow=10)
            self._reader = self.engine.execution_options(isolation_level="AUTOCOMMIT")
            connect_kwargs = self.engine.dialect.create_connect_args(self.engine.url)[1]
            self._read_pool = ReadPool(connect_kwargs, read_pool_size)

    async def fetch(self, query: Query, params: Mapping[str, Any]) -> Sequence[Sequence[Any]]:
        """The rows of one read statement (autocommit), by position."""
        if self.is_sqlite:
            async with self._reader.connect() as connection:
                return (await connection.execute(query.statement, dict(params))).all()
        assert self._read_pool is not None
        return await self._read_pool.fetch(query.pg_sql, query.pg_args(params))

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """Autocommit: each statement sees the latest committed data."""
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

    def insert_ignoring_conflicts(self, table: Table) -> Any:
        """``INSERT … ON CONFLICT DO NOTHING`` in this database's dialect."""
        dialect_insert = sqlite.insert if self.is_sqlite else postgresql.insert
        return dialect_insert(table).on_conflict_do_nothing()

    async def dispose(self) -> None:
        if self._read_pool is not None:
            await self._read_pool.close()
        await self.engine.dispose()
