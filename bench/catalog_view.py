"""The catalog view (ADR 0018), measured: how fresh it stays under write load, and what a read costs
compared with assembling the same document from the monolith.

    .venv/bin/python bench/catalog_view.py [--quick] [--duration 10] [--writers 8] [--embedded]

On PostgreSQL (DATABASE_URL, default the benchmarks' shop_bench: created, migrated and seeded large
once) and the machine's RabbitMQ (BENCH_BROKER_URL, default amqp://guest:guest@127.0.0.1:5672/; an
exchange of its own, deleted afterwards): the monolith (gunicorn, 2 workers x 8 threads), the catalog
service (1 worker), the relay and the catalog consumer (or, --embedded, the relay alone applying the
events in-process). The view is rebuilt from the tables first.

Freshness: ``--writers`` clients place one-unit orders and write reviews through the monolith for
``--duration`` seconds, each as fast as it is answered; a poller reads every new outbox row and, every
5 ms, the view's versions: an event's freshness is the time from its commit (``occurred_at``) to the
poll that first sees the view at its version or later (so up to 5 ms too high). Then, once drained,
the checker compares every item's document with its tables. Reads: wrk (16 connections) on
``GET /api/v1/catalog/items/1`` from the catalog service and from the monolith (assembled per
request), and on the monolith's two endpoints an app would otherwise call for the same facts
(``/api/v1/items/1`` and ``/api/v1/reviews/items/1/summary``): documents/s = 1 / (1/a + 1/b).
Writes bench/results/catalog_view.json; exits 1 if the checker found a difference.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import time
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import aio_pika
import httpx
from sqlalchemy import select

import identity
from bench._support import (
    PG_BENCH_URL,
    Needs,
    free_port,
    latency_summary,
    legacy_command,
    prepare_database,
    require,
    server,
    write_result,
    wrk,
)
from events import catalog
from events.db import Database
from events.schema import catalog_items
from events.stream import queue_name
from shopdb.tables import item_options as options
from shopdb.tables import outbox

NEEDS = Needs(executables=("wrk",), postgres=True)
SECRET = "bench-identity-secret"  # noqa: S105 - a throwaway secret for local servers
LOGS = ROOT / "var" / "bench-catalog"
PARTITIONS = 8


def _signed(method: str, path: str, user_id: int, body: bytes = b"") -> dict[str, str]:
    headers = identity.sign(
        SECRET,
        method=method,
        path=path,
        query="",
        body=body,
        user_id=str(user_id),
        scopes="user",
        request_id=uuid.uuid4().hex,
    )
    return {**headers, "content-type": "application/json"}


async def _writer(client: httpx.AsyncClient, option_ids: list[int], until: float, seed: int) -> int:
    rng, writes = random.Random(seed), 0  # noqa: S311 - load, not secrets
    while time.monotonic() < until:
        if rng.random() < 0.5:
            path, body = "/api/v1/orders", {"lines": [{"option_id": rng.choice(option_ids), "quantity": 1}]}
        else:
            path = "/api/v1/reviews"
            body = {"item_id": rng.randint(1, 500), "rating": rng.randint(1, 5), "body": "bench"}
        data = json.dumps(body).encode()
        answer = await client.post(
            path, content=data, headers=_signed("POST", path, rng.randint(6, 2005), data)
        )
        writes += answer.status_code == 201
    return writes


async def _poller(db: Database, stop: asyncio.Event, freshness_ms: list[float]) -> None:
    """Every 5 ms: new outbox rows, and the view's version of every item with an event not seen yet."""
    async with db.read() as conn:
        last = (await conn.execute(select(outbox.c.id).order_by(outbox.c.id.desc()).limit(1))).scalar() or 0
    waiting: dict[int, list[tuple[int, float]]] = {}  # item -> [(version, committed at)]
    while not (stop.is_set() and not waiting):
        async with db.read() as conn:
            rows = await conn.execute(
                select(outbox.c.id, outbox.c.key, outbox.c.version, outbox.c.occurred_at)
                .where(outbox.c.id > last)
                .order_by(outbox.c.id)
            )
            for row_id, key, version, occurred_at in rows:
                last = row_id
                waiting.setdefault(key, []).append((version, occurred_at.timestamp()))
            if waiting:
                seen = dict(
                    (
                        await conn.execute(
                            select(catalog_items.c.item_id, catalog_items.c.version).where(
                                catalog_items.c.item_id.in_(list(waiting))
                            )
                        )
                    ).all()
                )
                now = time.time()
                for key in list(waiting):
                    done = [at for version, at in waiting[key] if seen.get(key, 0) >= version]
                    freshness_ms += [(now - at) * 1000 for at in done]
                    waiting[key] = [(v, at) for v, at in waiting[key] if seen.get(key, 0) < v]
                    if not waiting[key]:
                        del waiting[key]
        await asyncio.sleep(0.005)


async def _freshness(legacy: str, database_url: str, writers: int, duration: float) -> dict[str, Any]:
    db = Database(database_url)
    try:
        async with db.read() as conn:
            option_ids = list((await conn.execute(select(options.c.id).where(options.c.stock > 5))).scalars())
        stop, freshness_ms = asyncio.Event(), []
        poller = asyncio.create_task(_poller(db, stop, freshness_ms))
        async with httpx.AsyncClient(base_url=legacy, timeout=30) as client:
            # Warm-up: one write seen in the view, so the relay and the consumer are up before the load.
            deadline = time.monotonic() + 60
            while not freshness_ms and time.monotonic() < deadline:
                await _writer(client, option_ids, time.monotonic() + 0.01, -1)
                await asyncio.sleep(0.2)
            freshness_ms.clear()
            until = time.monotonic() + duration
            written = await asyncio.gather(*(_writer(client, option_ids, until, n) for n in range(writers)))
        stop.set()
        await asyncio.wait_for(poller, timeout=60)
        return {
            "writes": sum(written),
            "writes_per_s": round(sum(written) / duration, 1),
            "events": len(freshness_ms),
        } | {key: round(value, 1) for key, value in latency_summary(freshness_ms).items()}
    finally:
        await db.dispose()


async def _check(database_url: str) -> int:
    db = Database(database_url)
    try:
        return len(await catalog.check(db))
    finally:
        await db.dispose()


async def _delete_topology(broker_url: str, exchange: str) -> None:
    connection = await aio_pika.connect(broker_url, timeout=5)
    async with connection:
        channel = await connection.channel()
        for partition in range(PARTITIONS):
            await channel.queue_delete(queue_name(exchange, "catalog", partition))
        await channel.exchange_delete(exchange)


def _documents_per_second(a: float, b: float) -> float:
    return round(1 / (1 / a + 1 / b), 1) if a and b else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="5 s of writes, 3 s per read run")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of write load")
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--embedded", action="store_true", help="no broker: the relay applies the events")
    options_ = parser.parse_args()
    require(NEEDS)
    duration, read_seconds = (5.0, 3) if options_.quick else (options_.duration, 6)
    database_url = os.environ.get("DATABASE_URL", PG_BENCH_URL)
    broker_url = (
        "" if options_.embedded else os.environ.get("BENCH_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672/")
    )
    exchange = f"bench.{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "IDENTITY_SECRET": SECRET,
        "DJANGO_SETTINGS_MODULE": "legacy_django.config.django.local",
        "BROKER_URL": broker_url,
        "EVENTS_EXCHANGE": exchange,
        "EVENTS_PARTITIONS": str(PARTITIONS),
        "LOG_LEVEL": "WARNING",
    }
    prepare_database(env)
    subprocess.run(
        [sys.executable, "-m", "services.catalog", "rebuild", "--once"], env=env, cwd=ROOT, check=True
    )
    LOGS.mkdir(parents=True, exist_ok=True)
    legacy_port, catalog_port = free_port(), free_port()
    workers = [["relay"]] + ([] if options_.embedded else [["consume", "catalog"]])
    result: dict[str, Any] = {
        "mode": "embedded" if options_.embedded else "rabbitmq",
        "partitions": PARTITIONS,
    }
    with ExitStack() as stack:
        legacy = stack.enter_context(
            server(legacy_command(legacy_port, workers=2, threads=8), env, legacy_port)
        )
        service = stack.enter_context(
            server(
                [sys.executable, "-m", "services.catalog"],
                {**env, "CATALOG_URL": f"http://127.0.0.1:{catalog_port}"},
                catalog_port,
            )
        )
        processes = []
        for args in workers:
            log = stack.enter_context((LOGS / f"{args[0]}.log").open("wb"))
            processes.append(
                subprocess.Popen([sys.executable, "-m", "events", *args], env=env, stdout=log, stderr=log)
            )
        try:
            result["freshness"] = asyncio.run(_freshness(legacy, database_url, options_.writers, duration))
            result["checker_differences"] = asyncio.run(_check(database_url))
            reads = {
                "catalog service": wrk(
                    f"{service}/api/v1/catalog/items/1", duration=read_seconds, connections=16
                ),
                "legacy catalog (assembled)": wrk(
                    f"{legacy}/api/v1/catalog/items/1", duration=read_seconds, connections=16
                ),
                "legacy /items/1": wrk(f"{legacy}/api/v1/items/1", duration=read_seconds, connections=16),
                "legacy /reviews/.../summary": wrk(
                    f"{legacy}/api/v1/reviews/items/1/summary", duration=read_seconds, connections=16
                ),
            }
        finally:
            for process in processes:
                process.terminate()
                process.wait(timeout=10)
    if broker_url:
        asyncio.run(_delete_topology(broker_url, exchange))
    two_calls = _documents_per_second(
        reads["legacy /items/1"]["rps"], reads["legacy /reviews/.../summary"]["rps"]
    )
    result["reads"] = reads | {"legacy, two endpoints (documents/s)": {"rps": two_calls}}
    result["catalog_vs_two_legacy_calls"] = (
        round(reads["catalog service"]["rps"] / two_calls, 1) if two_calls else None
    )
    path = write_result("catalog_view", result)
    fresh = result["freshness"]
    print(
        f"freshness ({result['mode']}, {fresh['writes_per_s']} writes/s, {fresh['events']} events): "
        f"p50 {fresh['p50_ms']} ms, p99 {fresh['p99_ms']} ms, max {fresh['max_ms']} ms; "
        f"checker: {result['checker_differences']} differences"
    )
    for name, figures in result["reads"].items():
        print(f"{name:<36} {figures['rps']:>9.0f} req/s  p99 {figures.get('p99_ms', float('nan')):.1f} ms")
    print(f"catalog service vs the two legacy calls: {result['catalog_vs_two_legacy_calls']}x  ({path})")
    return 1 if result["checker_differences"] else 0


if __name__ == "__main__":
    sys.exit(main())
