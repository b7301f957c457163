"""How fast an override reaches every gateway worker process through Redis.

    .venv/bin/python bench/override_propagation.py [--workers 4] [--flips 60]

Starts N worker processes (tests/support/override_worker.py: a RedisOverrideStore each,
as a gateway worker holds), flips reviews.list between candidate and legacy F times
through the store (what flagctl does), and measures, per flip and worker, the time from
the start of the write to the moment that worker's snapshot shows it. Prints p50/p99/max;
writes bench/results/override_propagation.json. Uses Redis database 14 on 127.0.0.1:6379 (the tests use 15).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import redis

from bench._support import Needs, latency_summary, require, write_result
from flags.model import Override
from flags.overrides import AUDIT_STREAM, HASH_KEY, RedisOverrideStore
from tests.support.override_worker import start_workers, stop_workers

NEEDS = Needs(redis=True)
REDIS_URL = "redis://127.0.0.1:6379/14"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--flips", type=int, default=60)
    options = parser.parse_args()
    require(NEEDS)
    admin = redis.Redis.from_url(REDIS_URL)
    admin.delete(HASH_KEY, AUDIT_STREAM)  # a clean slate in the benchmark's own database
    writer = RedisOverrideStore(REDIS_URL)
    workers, lines = start_workers(options.workers, REDIS_URL)
    ready = {process.pid for process in workers}
    latencies_ms: list[float] = []
    try:
        time.sleep(0.5)
        while not lines.empty():
            lines.get()
        for flip in range(options.flips):
            backend = "candidate" if flip % 2 == 0 else "legacy"
            change = Override(
                route="reviews.list", backend=backend, reason="bench", actor="bench", at=time.time()
            )
            started = time.time()
            writer.apply([("reviews.list", change)], actor="bench", reason=f"flip {flip}")
            seen: set[int] = set()
            while seen != ready:
                line = lines.get(timeout=10)
                if line.get("overrides", {}).get("reviews.list") == backend and line["pid"] not in seen:
                    seen.add(line["pid"])
                    latencies_ms.append((line["t"] - started) * 1000)
            time.sleep(0.05)
    finally:
        stop_workers(workers)
        admin.delete(HASH_KEY, AUDIT_STREAM)
        admin.close()
        writer.stop()
    ordered = sorted(latencies_ms)
    result = {
        "workers": options.workers,
        "flips": options.flips,
        "samples": len(ordered),
        **latency_summary(ordered),
    }
    print(f"{options.flips} flips x {options.workers} worker processes = {len(ordered)} samples")
    p50, p99, worst = result["p50_ms"], result["p99_ms"], result["max_ms"]
    print(f"propagation p50 {p50:.2f} ms, p99 {p99:.2f} ms, max {worst:.2f} ms")
    write_result("override_propagation", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
