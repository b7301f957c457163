"""Legacy vs the new services, one worker each, same database, same load (wrk).

    .venv/bin/python bench/legacy_vs_service.py [--duration 8] [--connections 16]

Starts the monolith (gunicorn, 1 gthread worker x 4 threads) and each service (uvicorn,
1 worker) on free ports over the database DATABASE_URL names (default: the SQLite file
`make run` uses; a PostgreSQL database is created if missing; migrated and seeded here),
runs wrk against each hot read as the same signed-in user, and prints req/s and p99 side
by side with the ratio. Writes bench/results/legacy_vs_service.json. Loopback only, bounded
by --duration. Needs wrk (`make bench-tools`); `make bench` runs it on PostgreSQL.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import identity
from bench._support import (
    Needs,
    free_port,
    legacy_command,
    prepare_database,
    require,
    server,
    write_result,
    wrk,
)

NEEDS = Needs(executables=("wrk",))
SECRET = "bench-identity-secret"  # noqa: S105 - a throwaway secret for local servers
ENDPOINTS = [
    ("reviews.list", "reviews", "/api/v1/reviews/items/1", "size=20"),
    ("reviews.summary", "reviews", "/api/v1/reviews/items/1/summary", ""),
    ("recommendations.home", "recommendations", "/api/v1/recommendations/home", "limit=10"),
]


def _signed_wrk(url: str, path: str, query: str, duration: int, connections: int) -> dict[str, float]:
    # The assertion is valid +/- 30 s: sign with the run's midpoint.
    headers = identity.sign(
        SECRET,
        method="GET",
        path=path,
        query=query,
        body=b"",
        user_id="1",
        scopes="user",
        request_id="bench",
        timestamp=int(time.time()) + duration // 2,
    )
    return wrk(f"{url}{path}?{query}", duration=duration, connections=connections, headers=headers)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=8)
    parser.add_argument("--connections", type=int, default=16)
    options = parser.parse_args()
    require(NEEDS)
    env = {
        **os.environ,
        "IDENTITY_SECRET": SECRET,
        "DJANGO_SETTINGS_MODULE": "legacy_django.config.django.local",
    }
    prepare_database(env)
    ports = {name: free_port() for name in ("legacy", "reviews", "recommendations")}
    commands = {
        "legacy": legacy_command(ports["legacy"]),
        "reviews": [sys.executable, "-m", "services.reviews"],
        "recommendations": [sys.executable, "-m", "services.recommendations"],
    }
    env.update(
        {f"{name.upper()}_URL": f"http://127.0.0.1:{ports[name]}" for name in ("reviews", "recommendations")}
    )
    results = []
    with ExitStack() as stack:
        urls = {name: stack.enter_context(server(commands[name], env, ports[name])) for name in commands}
        header = ("route", "legacy req/s", "service req/s", "ratio", "legacy p99", "svc p99")
        print("{:<24}{:>14}{:>15}{:>8}{:>12}{:>10}".format(*header))
        for route, service, path, query in ENDPOINTS:
            legacy = _signed_wrk(urls["legacy"], path, query, options.duration, options.connections)
            candidate = _signed_wrk(urls[service], path, query, options.duration, options.connections)
            ratio = candidate["rps"] / legacy["rps"]
            results.append({"route": route, "legacy": legacy, "service": candidate, "ratio": ratio})
            print(
                f"{route:<24}{legacy['rps']:>14.0f}{candidate['rps']:>15.0f}{ratio:>7.1f}x"
                f"{legacy['p99_ms']:>10.1f}ms{candidate['p99_ms']:>8.1f}ms"
            )
    settings = {"duration_s": options.duration, "connections": options.connections, "workers": 1}
    write_result("legacy_vs_service", {"settings": settings, "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
