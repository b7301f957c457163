"""The services' PostgreSQL read pool (services/common/readpool.py, ADR 0021) and the compiled read
statements (``Query``): bounded connections, first come first served, a failed statement keeps its
connection, a lost or interrupted one is replaced, a closed pool refuses."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import pytest
from sqlalchemy import bindparam, func, literal_column, select

from services.common.db import Query
from services.common.readpool import PoolClosed, ReadPool
from services.common.settings import DEFAULT_DB_POOL_SIZE, load_settings
from shopdb.tables import items, reviews
from tests.conftest import require_service

CONNECT = {"host": "127.0.0.1", "port": 5432, "user": "postgres", "database": "postgres"}
PID = "SELECT pg_backend_pid()"


def _postgres_reachable() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 5432), timeout=1).close()
    except OSError:
        return False
    return True


def run(test: Callable[[ReadPool], Awaitable[None]], size: int = 2) -> None:
    require_service(_postgres_reachable(), "PostgreSQL on 127.0.0.1:5432")

    async def main() -> None:
        pool = ReadPool(CONNECT, size)
        try:
            await test(pool)
        finally:
            await pool.close()

    asyncio.run(main())


async def _pid(pool: ReadPool) -> int:
    rows = await pool.fetch(PID, [])
    return int(rows[0][0])


def test_concurrent_reads_share_at_most_size_connections():
    async def test(pool: ReadPool) -> None:
        pids = await asyncio.gather(
            *(pool.fetch("SELECT pg_backend_pid(), pg_sleep(0.01)", []) for _ in range(12))
        )
        assert len({rows[0][0] for rows in pids}) == 2

    run(test, size=2)


def test_waiting_reads_are_served_in_order_of_arrival():
    async def test(pool: ReadPool) -> None:
        finished: list[int] = []

        async def read(n: int) -> None:
            await pool.fetch("SELECT pg_sleep(0.005)", [])
            finished.append(n)

        await asyncio.gather(*(read(n) for n in range(12)))
        assert finished == list(range(12))  # one connection: each waiter in turn

    run(test, size=1)


def test_the_statement_runs_with_generic_plans_and_its_parameters():
    async def test(pool: ReadPool) -> None:
        rows = await pool.fetch("SELECT current_setting('plan_cache_mode'), $1::int + $2::int", [2, 3])
        assert tuple(rows[0]) == ("force_generic_plan", 5)

    run(test)


def test_a_failed_statement_keeps_its_connection():
    async def test(pool: ReadPool) -> None:
        before = await _pid(pool)
        with pytest.raises(asyncpg.DivisionByZeroError):
            await pool.fetch("SELECT 1 / $1::int", [0])
        assert await _pid(pool) == before

    run(test, size=1)


def test_a_connection_the_server_dropped_is_replaced_and_the_read_retried_once():
    async def test(pool: ReadPool) -> None:
        victim = await _pid(pool)
        admin = await asyncpg.connect(**CONNECT)
        try:
            assert await admin.fetchval("SELECT pg_terminate_backend($1)", victim)
            # The next read finds the pooled connection dead and runs on a new one.
            assert await _pid(pool) != victim
        finally:
            await admin.close()

    run(test, size=1)


def test_a_read_cancelled_half_way_does_not_give_its_connection_back():
    async def test(pool: ReadPool) -> None:
        first = await _pid(pool)
        task = asyncio.create_task(pool.fetch("SELECT pg_sleep(5)", []))
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # The slot is free again (size 1), on a new connection.
        assert await asyncio.wait_for(_pid(pool), 5) != first

    run(test, size=1)


def test_a_waiter_cancelled_before_its_turn_leaves_the_pool_whole():
    async def test(pool: ReadPool) -> None:
        busy = asyncio.create_task(pool.fetch("SELECT pg_sleep(0.3)", []))
        await asyncio.sleep(0.1)
        waiting = asyncio.create_task(pool.fetch(PID, []))
        await asyncio.sleep(0.05)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        await busy
        assert await asyncio.wait_for(_pid(pool), 5) > 0

    run(test, size=1)


def test_a_closed_pool_refuses_new_reads_and_fails_its_waiters():
    async def test(pool: ReadPool) -> None:
        busy = asyncio.create_task(pool.fetch("SELECT pg_sleep(0.2)", []))
        await asyncio.sleep(0.05)
        waiting = asyncio.create_task(pool.fetch(PID, []))
        await asyncio.sleep(0.05)
        await pool.close()
        with pytest.raises(PoolClosed):
            await waiting
        await busy  # a read in flight finishes; its connection is closed when it comes back
        with pytest.raises(PoolClosed):
            await pool.fetch(PID, [])

    run(test, size=1)


def test_a_query_compiles_once_with_its_parameters_in_order():
    item: Any = bindparam("item_id")
    query = Query(
        select(func.count(reviews.c.id), literal_column("5"), reviews.c.rating == 3)
        .select_from(items.outerjoin(reviews, reviews.c.item_id == item))
        .where(items.c.id == item)
        .group_by(items.c.id, reviews.c.rating)
        .limit(bindparam("size"))
    )
    # item_id is one $n however often it appears; the constant 3 is a parameter with its value.
    assert query.pg_sql.count("$2::BIGINT") == 2
    assert query.pg_args({"item_id": 7, "size": 20, "unused": "x"}) == [3, 7, 20]
    with pytest.raises(KeyError):
        query.pg_args({"item_id": 7})


def test_the_pool_size_is_a_setting_per_service():
    assert load_settings("reviews", {}).db_pool_size == DEFAULT_DB_POOL_SIZE == 8
    assert load_settings("recommendations", {}).db_pool_size == 4
    assert load_settings("recommendations", {"RECOMMENDATIONS_DB_POOL_SIZE": "3"}).db_pool_size == 3
    with pytest.raises(ValueError, match="at least one"):
        ReadPool(CONNECT, 0)
