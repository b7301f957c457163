"""What the gateway costs: the same request straight to the service and through the gateway, same run.

    .venv/bin/python bench/gateway_overhead.py [--duration 6] [--connections 32]

One uvicorn worker each (service, gateway), the monolith for tokens/JWKS, file flags
sending the measured routes to the candidate, over the database DATABASE_URL names
(default: the SQLite file `make run` uses; a PostgreSQL database is created if missing;
migrated and seeded here). Rows: reviews.summary (no auth) and reviews.list with a Bearer
token (the gateway's cached-token path; direct gets the identity assertion the gateway
would add). Writes bench/results/gateway_overhead.json. Needs wrk (`make bench-tools`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import urllib.request
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
from flags import default_flags, route_ids
from flags.routes_file import SHIPPED_ROUTES_FILE

NEEDS = Needs(executables=("wrk",))
SECRET = "bench-identity-secret"  # noqa: S105 - a throwaway secret for local servers


def _token(gateway: str) -> str:
    request = urllib.request.Request(  # noqa: S310 - our own local gateway
        f"{gateway}/api/v1/auth/token",
        data=json.dumps({"username": "demo1", "password": "demo-password"}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request) as response:  # noqa: S310
        return str(json.loads(response.read())["access_token"])


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=6)
    parser.add_argument("--connections", type=int, default=32)
    options = parser.parse_args()
    require(NEEDS)
    var = Path(tempfile.mkdtemp(prefix="gateway-bench-"))
    flags = default_flags(route_ids(SHIPPED_ROUTES_FILE))
    for feature in flags["features"]:
        feature["enabled"] = feature["name"] in ("route.reviews.summary", "route.reviews.list")
    (var / "flags.json").write_text(json.dumps(flags))
    ports = {name: free_port() for name in ("legacy", "reviews", "gateway")}
    env = {
        **os.environ,
        "IDENTITY_SECRET": SECRET,
        "DJANGO_SETTINGS_MODULE": "legacy_django.config.django.local",
        "LEGACY_URL": f"http://127.0.0.1:{ports['legacy']}",
        "REVIEWS_URL": f"http://127.0.0.1:{ports['reviews']}",
        "GATEWAY_PORT": str(ports["gateway"]),
        "GATEWAY_WORKERS": "1",
        "FLAGS_FILE": str(var / "flags.json"),
        "OVERRIDES_FILE": str(var / "overrides.json"),
        "REDIS_URL": "",
        "UNLEASH_URL": "",
    }
    prepare_database(env, signing_keys=True)
    commands = {
        "legacy": legacy_command(ports["legacy"]),
        "reviews": [sys.executable, "-m", "services.reviews"],
        "gateway": [sys.executable, "-m", "gateway"],
    }
    results = []
    with ExitStack() as stack:
        urls = {name: stack.enter_context(server(commands[name], env, ports[name])) for name in commands}
        token = _token(urls["gateway"])
        cases = [
            ("reviews.summary", "/api/v1/reviews/items/1/summary", "", None),
            ("reviews.list", "/api/v1/reviews/items/1", "?size=20", token),
        ]
        print(
            "{:<18}{:>14}{:>14}{:>8}{:>14}{:>14}".format(
                "route", "direct req/s", "gateway req/s", "ratio", "direct p50", "gateway p50"
            )
        )
        for route, path, query, bearer in cases:
            signed = identity.sign(
                SECRET,
                method="GET",
                path=path,
                query=query.removeprefix("?"),
                body=b"",
                user_id="1" if bearer else "",
                scopes="user" if bearer else "",
                request_id="bench",
                timestamp=int(time.time()) + options.duration // 2,
            )
            direct = wrk(
                f"{urls['reviews']}{path}{query}",
                duration=options.duration,
                connections=options.connections,
                headers=signed,
            )
            through = wrk(
                f"{urls['gateway']}{path}{query}",
                duration=options.duration,
                connections=options.connections,
                headers={"Authorization": f"Bearer {bearer}"} if bearer else None,
            )
            ratio = through["rps"] / direct["rps"]
            results.append({"route": route, "direct": direct, "gateway": through, "ratio": ratio})
            print(
                f"{route:<18}{direct['rps']:>14.0f}{through['rps']:>14.0f}{ratio:>7.2f}x"
                f"{direct['p50_ms']:>12.2f}ms{through['p50_ms']:>12.2f}ms"
            )
            if through["non_2xx"] or direct["non_2xx"]:
                bad = f"direct {direct['non_2xx']:.0f}, gateway {through['non_2xx']:.0f}"
                print(f"  warning: non-2xx answers ({bad})")
    settings = {"duration_s": options.duration, "connections": options.connections, "workers": 1}
    write_result("gateway_overhead", {"settings": settings, "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
