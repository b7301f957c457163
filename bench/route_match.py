"""Route matching cost with 10 and with 1,000 routes (it should not grow with the count).

    .venv/bin/python bench/route_match.py [--calls 200000]

In-process, no servers. Prints ns per match for each table size; writes bench/results/route_match.json.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._support import Needs, write_result
from gateway.routes import build_table

NEEDS = Needs()  # the gateway's route table only


def _table(count: int):  # type: ignore[no-untyped-def]
    routes = [
        {"id": f"r{n}", "path": f"/api/v{n % 7}/things{n}/{{id}}/part{n % 13}", "candidate": "legacy"}
        for n in range(count)
    ]
    return build_table({"clusters": {"legacy": {"url": "http://127.0.0.1:1"}}, "routes": routes}, {})


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=200_000)
    calls = parser.parse_args().calls
    results: dict[str, float] = {}
    print(f"{'routes':>8}{'ns per match':>16}")
    for count in (10, 1000):
        table = _table(count)
        target = count // 2
        path = f"/api/v{target % 7}/things{target}/42/part{target % 13}"
        assert table.match("GET", path).id == f"r{target}"  # type: ignore[union-attr]
        started = time.perf_counter_ns()
        for _ in range(calls):
            table.match("GET", path)
        results[str(count)] = (time.perf_counter_ns() - started) / calls
        print(f"{count:>8}{results[str(count)]:>16.0f}")
    write_result("route_match", {"calls": calls, "ns_per_match": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
