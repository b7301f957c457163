"""How long a change made in Unleash takes to reach the gateway's Unleash provider, for comparison
with the Redis overrides (bench/override_propagation.py).

    .venv/bin/python bench/unleash_propagation.py [--flips 10] [--refresh 1.0]

Starts the real Unleash server (npm unleash-server under .cache/node, `make node-deps`) on the local
PostgreSQL, points 4 UnleashProviders (as 4 gateway workers would hold) at it with the given refresh
interval, and toggles a flexible rollout 0 % <-> 100 % through the admin API. Measures the time from the
admin call to each provider showing the new rollout. Writes bench/results/unleash_propagation.json.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._support import Needs, latency_summary, require, write_result
from flags.providers import UnleashProvider
from tests.support.unleash import unleash_server

NEEDS = Needs(unleash=True, postgres=True)
FLAG = "route.reviews.list"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--flips", type=int, default=10)
    parser.add_argument("--refresh", type=float, default=1.0)
    options = parser.parse_args()
    require(NEEDS)
    work = Path(tempfile.mkdtemp(prefix="unleash-bench-"))
    latencies: list[float] = []
    with unleash_server(work) as server:
        server.rollout(FLAG, 0)
        providers = [
            UnleashProvider(
                server.url,
                server.backend_token,
                cache_file=work / f"cache-{n}.json",
                refresh_seconds=options.refresh,
            )
            for n in range(4)
        ]
        for provider in providers:
            provider.start()
        try:
            deadline = time.monotonic() + 30
            while any(p.toggles.rollout.get(FLAG) != 0 for p in providers) and time.monotonic() < deadline:
                time.sleep(0.05)
            for flip in range(options.flips):
                target = 100 if flip % 2 == 0 else 0
                started = time.monotonic()
                server.rollout(FLAG, target)
                pending = set(range(len(providers)))
                while pending and time.monotonic() - started < 60:
                    for index in list(pending):
                        if providers[index].toggles.rollout.get(FLAG) == target:
                            latencies.append((time.monotonic() - started) * 1000)
                            pending.discard(index)
                    time.sleep(0.01)
        finally:
            for provider in providers:
                provider.stop()
    ordered = sorted(latencies)
    result = {
        "flips": options.flips,
        "providers": 4,
        "refresh_seconds": options.refresh,
        "samples": len(ordered),
        **latency_summary(ordered),
    }
    print(
        f"{options.flips} flips x 4 providers, refresh {options.refresh}s: "
        f"p50 {result['p50_ms']:.0f} ms, p99 {result['p99_ms']:.0f} ms, max {result['max_ms']:.0f} ms"
    )
    write_result("unleash_propagation", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
