"""The tests' own Redis database (15 on the local Redis; benchmarks use 14), kept clean around a test."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import redis

from tests.conftest import require_service

TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


@contextlib.contextmanager
def clean_redis(*keys: str) -> Iterator[redis.Redis]:
    """A client of the tests' database with ``keys`` deleted before and after; an unreachable Redis
    skips the test on a developer machine and fails it under CI=true."""
    client = redis.Redis.from_url(TEST_REDIS_URL, decode_responses=True)
    try:
        reachable = bool(client.ping())
    except redis.RedisError:
        reachable = False
    require_service(reachable, f"Redis at {TEST_REDIS_URL}")
    client.delete(*keys)
    try:
        yield client
    finally:
        client.delete(*keys)
        client.close()
