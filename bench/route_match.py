"""Route matching cost with 10 and with 1,000 routes (it should not grow with the count).

.venv/bin/python bench/route_match.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.routes import build_table


def _table(count: int):  # type: ignore[no-untyped-def]
    routes = [
        {"id": f"r{n}", "path": f"/api/v{n % 7}/things{n}/{{id}}/part{n % 13}", "candidate": "legacy"}
        for n in range(count)
    ]
    return build_table({"clusters": {"legacy": {"url": "http://127.0.0.1:1"}}, "routes": routes}, {})


def main() -> int:
    print(f"{'routes':>8}{'ns per match':>16}")
    for count in (10, 1000):
        table = _table(count)
        target = count // 2
        path = f"/api/v{target % 7}/things{target}/42/part{target % 13}"
        assert table.match("GET", path).id == f"r{target}"  # type: ignore[union-attr]
        calls = 200_000
        started = time.perf_counter_ns()
        for _ in range(calls):
            table.match("GET", path)
        print(f"{count:>8}{(time.perf_counter_ns() - started) / calls:>16.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
