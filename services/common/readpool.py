"""The PostgreSQL read pool of a service: a few asyncpg connections for autocommit SELECTs (ADR 0021).

asyncpg's own ``Pool`` costs ~35 µs of CPU per query on top of the query itself (a connection
proxy, timeouts, a reset and an inactivity timer per checkout; measured on the 2-core machine of
ADR 0021), as much as the query's own client work. The reads need none of it: a connection only
ever runs one autocommit statement at a time and never changes its session, so checking one out is
popping it from a list, and giving it back is handing it to the oldest waiter or pushing it back.

Each connection prepares a statement once (asyncpg's statement cache, keyed by the SQL text) and
asks the server for generic plans (``plan_cache_mode``): the hot reads are the same few statements
with different ids, and re-planning them per execution cost more than running them.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

import asyncpg  # type: ignore[import-untyped]

SERVER_SETTINGS = {"plan_cache_mode": "force_generic_plan"}


class PoolClosed(RuntimeError):
    """The pool was closed (the app is shutting down)."""


def _connection_lost(connection: asyncpg.Connection, exc: BaseException) -> bool:
    """A failure of the connection rather than of the statement: worth one retry on a new connection."""
    return connection.is_closed() or isinstance(exc, (OSError, asyncpg.PostgresConnectionError))


class ReadPool:
    """At most ``size`` connections, opened on demand; first come, first served when all are busy."""

    def __init__(self, connect_kwargs: Mapping[str, Any], size: int) -> None:
        if size < 1:
            raise ValueError("the read pool needs at least one connection")
        self._connect_kwargs = dict(connect_kwargs)
        self._size = size
        self._idle: list[asyncpg.Connection] = []
        self._opened = 0  # open or being opened
        # A waiter's future gets a connection handed over, or None: a slot was freed, open one.
        self._waiters: deque[asyncio.Future[asyncpg.Connection | None]] = deque()
        self._closed = False

    async def fetch(self, sql: str, args: Sequence[Any]) -> list[asyncpg.Record]:
        """The rows of one statement. A connection found dead (the server restarted, a network
        failure) is dropped and the statement tried once more on a new connection: it only reads."""
        for attempt in (1, 2):
            connection = self._idle.pop() if self._idle else await self._acquire()
            try:
                rows: list[asyncpg.Record] = await connection.fetch(sql, *args)
            except BaseException as exc:
                lost = _connection_lost(connection, exc)
                if isinstance(exc, asyncpg.PostgresError) and not lost:
                    self._release(connection)  # the statement failed; the connection is fine
                    raise
                # Lost, or interrupted half-way (cancelled): never hand that connection out again.
                self._discard(connection)
                if attempt == 1 and lost and not self._closed:
                    continue
                raise
            self._release(connection)
            return rows
        raise AssertionError("unreachable")  # pragma: no cover

    async def _acquire(self) -> asyncpg.Connection:
        loop = asyncio.get_running_loop()
        while True:
            if self._closed:
                raise PoolClosed("the read pool is closed")
            if self._idle:
                return self._idle.pop()
            if self._opened < self._size:
                return await self._open()
            waiter: asyncio.Future[asyncpg.Connection | None] = loop.create_future()
            self._waiters.append(waiter)
            try:
                connection = await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    # Handed a connection (or a slot) just as we were cancelled: pass it on.
                    handed = waiter.result()
                    if handed is None:
                        self._wake_one(None)
                    else:
                        self._release(handed)
                elif waiter in self._waiters:
                    self._waiters.remove(waiter)
                raise
            if connection is not None:
                return connection

    async def _open(self) -> asyncpg.Connection:
        self._opened += 1
        try:
            connection: asyncpg.Connection = await asyncpg.connect(
                **self._connect_kwargs, server_settings=SERVER_SETTINGS
            )
        except BaseException:
            self._opened -= 1
            self._wake_one(None)
            raise
        return connection

    def _wake_one(self, connection: asyncpg.Connection | None) -> bool:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(connection)
                return True
        return False

    def _release(self, connection: asyncpg.Connection) -> None:
        if self._closed:
            self._discard(connection)
        elif not self._wake_one(connection):
            self._idle.append(connection)

    def _discard(self, connection: asyncpg.Connection) -> None:
        connection.terminate()
        self._opened -= 1
        if not self._closed:
            self._wake_one(None)

    async def close(self) -> None:
        """Close the idle connections now and the busy ones when they come back; waiters fail."""
        self._closed = True
        idle, self._idle = self._idle, []
        self._opened -= len(idle)
        await asyncio.gather(*(connection.close() for connection in idle), return_exceptions=True)
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(PoolClosed("the read pool is closed"))
