"""How the Python code outside Django opens the shared database (ADR 0004), for the services and the
events code alike: on SQLite, WAL, a 20 s busy wait, and every transaction that is not an autocommit
read begins ``IMMEDIATE`` (takes the write lock up front and waits for it, instead of failing half-way
when one of the monolith's processes wrote first)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

# The execution option of an engine's autocommit reader on SQLite (``engine.execution_options(**{
# AUTOCOMMIT: True})``): its statements run on their own, without BEGIN.
AUTOCOMMIT = "shop_autocommit"


def sqlite_engine(url: str) -> AsyncEngine:
    """An async engine on the SQLite file ``url`` (``sqlite+aiosqlite://…``) with the rules above."""
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
        if not connection.get_execution_options().get(AUTOCOMMIT):
            connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def stored_now(is_sqlite: bool) -> datetime:
    """The current time as the monolith stores it (naive UTC in SQLite, aware in PostgreSQL)."""
    current = datetime.now(UTC)
    return current.replace(tzinfo=None) if is_sqlite else current
