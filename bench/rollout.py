"""A parity-gated rollout of one route under steady load: a healthy candidate, then one that changes one
field on 1 % of its answers.

    .venv/bin/python bench/rollout.py [--quick] [--rps 60]

One stack: the monolith (gunicorn 1 worker x 4 threads) and the reviews service on PostgreSQL
(shop_bench), the gateway (2 workers) on Redis database 14, and an open-loop load of anonymous
``GET /api/v1/reviews/items/{n}/summary`` (reviews.summary) at ``--rps`` from the start to the end of
each scenario. Each scenario: 5 s of load with the route on legacy (the baseline), then
``flagctl rollout start reviews.summary --steps 1,5,25,50,100 --every 10s --min-samples 200``
(``--quick``: every 5 s, 100 samples), until the rollout is over.

1. **healthy**: the candidate is the reviews service itself. Reported: time from the command to
   ``done``, each step's gate figures, and the clients' error rate and p99 before and during.
2. **one field on 1 %**: the candidate is tests/support/altering_proxy.py in front of the service,
   changing ``rating_average`` in every 100th answer. Reported: the step it was rolled back at, after
   how many compared samples and seconds, and the first differing field named.

Writes bench/results/rollout.json. Needs aiohttp (`make bench-tools`), PostgreSQL and Redis.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import redis

from bench._support import (
    PG_BENCH_URL,
    Needs,
    free_port,
    latency_summary,
    legacy_command,
    prepare_database,
    require,
    server_process,
    write_result,
)
from flags.overrides import (
    AUDIT_STREAM,
    FIGURES_PREFIX,
    HASH_KEY,
    LEASE_PREFIX,
    ROLLOUTS_KEY,
    RedisOverrideStore,
)
from gateway.rollout import LEASE_NAME, topic

NEEDS = Needs(modules=("aiohttp",), redis=True, postgres=True)
REDIS_URL = "redis://127.0.0.1:6379/14"
VAR = ROOT / "var" / "bench"
ROUTE = "reviews.summary"
ITEMS = 200
BASELINE_S = 5.0
BIN = Path(sys.executable).parent


def _clear(client: redis.Redis) -> None:
    client.delete(
        HASH_KEY, AUDIT_STREAM, ROLLOUTS_KEY, LEASE_PREFIX + LEASE_NAME, FIGURES_PREFIX + topic(ROUTE)
    )


async def _load(url: str, rps: float, stop: asyncio.Event, results: list[tuple[float, int, float]]) -> None:
    """Open loop: one request every 1/rps s whatever the answers; (sent at, status, ms) per request."""
    import aiohttp

    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(timeout=timeout, cookie_jar=aiohttp.DummyCookieJar()) as session:
        tasks: set[asyncio.Task[None]] = set()

        async def one(n: int) -> None:
            sent = time.monotonic()
            try:
                async with session.get(f"{url}/api/v1/reviews/items/{n % ITEMS + 1}/summary") as answer:
                    await answer.read()
                    status = answer.status
            except (aiohttp.ClientError, TimeoutError):
                status = 0
            results.append((sent, status, (time.monotonic() - sent) * 1000))

        n, start = 0, time.monotonic()
        while not stop.is_set():
            n += 1
            task = asyncio.create_task(one(n))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            await asyncio.sleep(max(0.0, start + n / rps - time.monotonic()))
        await asyncio.gather(*tasks)


def _clients(results: list[tuple[float, int, float]], start: float, end: float) -> dict[str, Any]:
    window = [(status, ms) for sent, status, ms in results if start <= sent < end]
    errors = sum(1 for status, _ in window if status == 0 or status >= 500)
    summary: dict[str, Any] = {"requests": len(window), "errors": errors}
    summary["error_rate"] = round(errors / len(window), 5) if window else None
    if window:
        summary.update(latency_summary([ms for _, ms in window]))
    return summary


def _scenario(url: str, rps: float, steps: list[str], until_over_s: float) -> dict[str, Any]:
    """Load for the baseline, then a rollout of the route until it is over; the figures of both."""
    store = RedisOverrideStore(REDIS_URL)
    results: list[tuple[float, int, float]] = []

    async def run() -> dict[str, Any]:
        stop = asyncio.Event()
        loader = asyncio.create_task(_load(url, rps, stop, results))
        await asyncio.sleep(BASELINE_S)
        command = [str(BIN / "flagctl"), "rollout", "start", ROUTE, *steps, "--reason", "bench/rollout.py"]
        env = {**os.environ, "REDIS_URL": REDIS_URL, "UNLEASH_URL": ""}
        started = time.monotonic()
        await asyncio.to_thread(subprocess.run, command, env=env, check=True, capture_output=True)
        rollout = None
        while time.monotonic() - started < until_over_s:
            rollout = (await asyncio.to_thread(store.rollouts)).get(ROUTE)
            if rollout is not None and not rollout.active:
                break
            await asyncio.sleep(0.2)
        over = time.monotonic()
        stop.set()
        await loader
        assert rollout is not None
        return {"started": started, "over": over, "rollout": rollout.to_json()}

    try:
        outcome = asyncio.run(run())
    finally:
        store.stop()
    start, over = outcome["started"], outcome["over"]
    first = min(sent for sent, _, _ in results)
    return {
        "seconds": round(over - start, 1),
        "rollout": outcome["rollout"],
        "clients_before": _clients(results, first, start),
        "clients_during": _clients(results, start, over),
    }


def _steps(rollout: dict[str, Any]) -> list[dict[str, Any]]:
    """Each change with the gate figures that justified it, times from the start."""
    started = rollout["started_at"]
    rows = []
    for event in rollout["history"]:
        gates = event.get("gates") or {}
        rows.append(
            {
                "at_s": round(event["at"] - started, 1),
                "action": event["action"],
                "percent": event["percent"],
                "compared": gates.get("compared"),
                "parity_percent": gates.get("parity_percent"),
                "first_difference": gates.get("first_difference"),
                "candidate_error_rate_percent": (gates.get("candidate") or {}).get("error_rate_percent"),
                "legacy_error_rate_percent": (gates.get("legacy") or {}).get("error_rate_percent"),
                "candidate_p99_ms": (gates.get("candidate") or {}).get("p99_ms"),
                "legacy_p99_ms": (gates.get("legacy") or {}).get("p99_ms"),
                "latency_gate": (gates.get("gates") or {}).get("latency"),
                "workers": gates.get("workers"),
            }
        )
    return rows


def _print(name: str, result: dict[str, Any]) -> None:
    rollout = result["rollout"]
    state = f"{rollout['state']} at {rollout['percent']} %"
    print(f"{name}: {state} after {result['seconds']} s: {rollout['reason']}")
    for step in result["steps"]:
        print(
            f"  {step['at_s']:>6.1f} s  {step['action']:<9} {step['percent']:>3} %  "
            f"compared {step['compared']}  "
            f"parity {step['parity_percent']}  errors cand/legacy {step['candidate_error_rate_percent']}/"
            f"{step['legacy_error_rate_percent']} %  p99 cand/legacy {step['candidate_p99_ms']}/"
            f"{step['legacy_p99_ms']} ms ({step['latency_gate']})"
        )
    before, during = result["clients_before"], result["clients_during"]
    for label, figures in (("before", before), ("during", during)):
        print(
            f"  clients {label}: {figures['requests']} req, {figures['errors']} errors, "
            f"p99 {figures.get('p99_ms', 0):.1f} ms"
        )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="5 s windows and 100 samples (default 10 s, 200)"
    )
    parser.add_argument("--rps", type=float, default=60.0, help="offered load on the route (default 60)")
    args = parser.parse_args()
    require(NEEDS)
    VAR.mkdir(parents=True, exist_ok=True)
    every, samples = ("5s", "100") if args.quick else ("10s", "200")
    steps = ["--steps", "1,5,25,50,100", "--every", every, "--min-samples", samples]
    ports = {name: free_port() for name in ("legacy", "reviews", "proxy", "gateway")}
    env = {
        **os.environ,
        "DATABASE_URL": PG_BENCH_URL,
        "DJANGO_SETTINGS_MODULE": "legacy_django.config.django.local",
        "REDIS_URL": REDIS_URL,
        "UNLEASH_URL": "",
        "GATEWAY_WORKERS": "2",
        "GATEWAY_ACCESS_LOG": "false",
        "VAR_DIR": str(VAR),
        "LEGACY_URL": f"http://127.0.0.1:{ports['legacy']}",
    }
    prepare_database(env, signing_keys=True)
    client = redis.Redis.from_url(REDIS_URL)
    service = f"http://127.0.0.1:{ports['reviews']}"
    results: dict[str, Any] = {}
    with ExitStack() as stack:
        stack.callback(_clear, client)
        start = stack.enter_context

        def process(name: str, command: list[str], extra: dict[str, str]) -> str:
            log = VAR / f"rollout-{name}.log"
            return start(server_process(command, {**env, **extra}, ports[name], log=log))[0]

        process("legacy", legacy_command(ports["legacy"], workers=1, threads=4), {})
        process("reviews", [sys.executable, "-m", "services.reviews"], {"REVIEWS_URL": service})
        proxy_command = [sys.executable, "-m", "uvicorn", "tests.support.altering_proxy:app",
                         "--port", str(ports["proxy"]), "--log-level", "warning"]  # fmt: skip
        process("proxy", proxy_command, {"UPSTREAM": service, "PROXY_MODE": "alter", "ALTER_EVERY": "100"})
        for name, candidate in (
            ("healthy", service),
            ("one_field_on_1_percent", f"http://127.0.0.1:{ports['proxy']}"),
        ):
            _clear(client)
            with server_process(
                [sys.executable, "-m", "gateway"],
                {**env, "GATEWAY_PORT": str(ports["gateway"]), "REVIEWS_URL": candidate},
                ports["gateway"],
                log=VAR / f"rollout-gateway-{name}.log",
            ) as (url, _):
                result = _scenario(url, args.rps, steps, until_over_s=300)
            result["steps"] = _steps(result["rollout"])
            del result["rollout"]["window"]  # the raw histograms: the steps above carry the figures
            results[name] = result
            _print(name, result)
    healthy, altered = results["healthy"], results["one_field_on_1_percent"]
    last = altered["steps"][-1]
    summary = {
        "settings": {
            "rps": args.rps,
            "steps": steps,
            "legacy": "gunicorn 1 worker x 4 threads",
            "gateway_workers": 2,
        },
        "healthy": {
            "state": healthy["rollout"]["state"],
            "time_to_done_s": healthy["seconds"] if healthy["rollout"]["state"] == "done" else None,
            "errors_added": healthy["clients_during"]["errors"] - healthy["clients_before"]["errors"],
            **healthy,
        },
        "one_field_on_1_percent": {
            "state": altered["rollout"]["state"],
            "rolled_back_at_percent": altered["steps"][-2]["percent"] if len(altered["steps"]) > 1 else None,
            "after_s": last["at_s"],
            "compared": last["compared"],
            "first_difference": last["first_difference"],
            **altered,
        },
    }
    path = write_result("rollout", summary)
    print(
        json.dumps(
            {k: v for k, v in summary["one_field_on_1_percent"].items() if not isinstance(v, dict | list)}
        )
    )
    print(f"wrote {path}")
    return 0 if healthy["rollout"]["state"] == "done" and altered["rollout"]["state"] == "rolled_back" else 1


if __name__ == "__main__":
    sys.exit(main())
