"""Upstream client cost: our lean client vs aiohttp vs httpx, same backend, same run.

    .venv/bin/python bench/transport_compare.py [--requests 20000] [--concurrency 64]

Each client sends the same GET with the gateway's headers to a fixed ~1 KB JSON backend
(bench/_backend.py on uvicorn, 1 worker) from one asyncio process (uvloop), C requests in
flight. Reported: req/s and the client process's CPU µs per request (what the gateway pays
per forward). aiohttp comes from the [bench] extra (`make bench-tools`). Writes
bench/results/transport_compare.json.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx
import uvloop

from bench._support import Needs, free_port, require, server, write_result
from gateway.upstream import Pool

NEEDS = Needs(modules=("aiohttp",))
HEADERS = {"x-request-id": "bench", "x-user-id": "1", "x-user-scopes": "user", "accept": "application/json"}


async def _drive(
    send_one: Callable[[], Awaitable[int]], requests: int, concurrency: int
) -> tuple[float, float]:
    remaining = requests

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            status = await send_one()
            assert status == 200

    for _ in range(200):  # warm up connections
        await send_one()
    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return requests / (time.perf_counter() - wall), (time.process_time() - cpu) / requests * 1e6


async def lean(url: str, port: int, requests: int, concurrency: int) -> tuple[float, float]:
    pool = Pool("127.0.0.1", port, max_connections=concurrency)
    headers = [(k.encode(), v.encode()) for k, v in HEADERS.items()]

    async def one() -> int:
        response = await pool.request("GET", b"/items", headers, connect_timeout=1, read_timeout=5)
        await response.read()
        return response.status

    try:
        return await _drive(one, requests, concurrency)
    finally:
        await pool.close()


async def aiohttp_client(url: str, port: int, requests: int, concurrency: int) -> tuple[float, float]:
    import aiohttp

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar()) as session:

        async def one() -> int:
            async with session.get(f"{url}/items", headers=HEADERS) as response:
                await response.read()
                return response.status

        return await _drive(one, requests, concurrency)


async def httpx_client(url: str, port: int, requests: int, concurrency: int) -> tuple[float, float]:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits) as client:

        async def one() -> int:
            response = await client.get(f"{url}/items", headers=HEADERS)
            return response.status_code

        return await _drive(one, requests, concurrency)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=64)
    options = parser.parse_args()
    require(NEEDS)
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "bench._backend:app",
        "--port",
        str(port),
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    results = {}
    with server(command, os.environ, port) as url:
        clients = {"lean (gateway.upstream)": lean, "aiohttp": aiohttp_client, "httpx": httpx_client}
        print(f"{'client':<26}{'req/s':>10}{'client CPU µs/req':>20}")
        for name, client in clients.items():
            rps, cpu = uvloop.run(client(url, port, options.requests, options.concurrency))
            results[name] = {"rps": rps, "cpu_us_per_request": cpu}
            print(f"{name:<26}{rps:>10.0f}{cpu:>20.1f}")
    write_result("transport_compare", {"settings": vars(options), "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
