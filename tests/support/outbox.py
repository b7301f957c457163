"""Reading the outbox of a test database (SQLite file or PostgreSQL) without the app's code."""

from __future__ import annotations

import contextlib
import sqlite3
from dataclasses import dataclass

import psycopg

from tests.support.servers import is_postgres


@dataclass(frozen=True, slots=True)
class Written:
    """An outbox row as the event parity tests compare it: ids and timestamps aside."""

    type: str
    key: int
    version: int
    payload: str


def _rows(database_url: str, query: str, params: tuple[int, ...]) -> list[tuple]:
    if is_postgres(database_url):
        url = database_url.replace("postgres://", "postgresql://", 1)
        with psycopg.connect(url, autocommit=True) as conn:
            return list(conn.execute(query.replace("?", "%s"), params).fetchall())
    with contextlib.closing(sqlite3.connect(database_url.removeprefix("sqlite:///"))) as conn:
        return list(conn.execute(query, params).fetchall())


def last_event_id(database_url: str) -> int:
    return int(_rows(database_url, "SELECT COALESCE(MAX(id), 0) FROM items_outboxevent", ())[0][0])


def events_after(database_url: str, after_id: int = 0) -> list[Written]:
    """The events written after ``after_id``, in the order they were written."""
    rows = _rows(
        database_url,
        "SELECT type, key, version, payload FROM items_outboxevent WHERE id > ? ORDER BY id",
        (after_id,),
    )
    return [Written(type=t, key=int(k), version=int(v), payload=p) for t, k, v, p in rows]
