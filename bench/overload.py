"""Legacy saturated at a multiple of its capacity, through the gateway, with and without its limit.

    .venv/bin/python bench/overload.py [--quick] [--factor 3] [--runs N]

What issue "Win the spike" asks of the adaptive concurrency limit (ADR 0013), measured on one
stack: the monolith with a fixed small capacity (gunicorn, 1 worker x 2 threads) on PostgreSQL
(shop_bench), the gateway (2 workers) in front, the replay's read mix (60 % reviews.list, 15 %
reviews.summary, 15 % recommendations.home, 5 % reviews.detail, every route on legacy), 20
signed-in users, client timeout 2 s, no retries. Per run, in this order and in the same run:

1. **unloaded**: one request at a time (limit off) → legacy's unloaded p50/p99 through the gateway;
2. **capacity**: a closed loop of 8 clients for a few seconds (limit off) → the answers per second
   legacy finishes at best: its capacity;
3. **overload, off**: an open-loop load at ``factor`` x that capacity, limit off (the baseline);
4. **overload, on**: the same load with the shipped limit (``gateway/routes.toml``).

Two gateways stand in front of the one legacy: one with legacy's limit off, one with the shipped
table; each overload phase starts on an idle legacy and lasts 20 s (12 s with --quick). Per
overload phase: the share of requests that ended as client timeouts, shed (503 overloaded: every
one checked for Retry-After, and the p99 of their latency), other errors, and the p99 of the
admitted requests (2xx/4xx) against the unloaded p99 of step 1; the first 2 s of a phase (the
limit learning from its initial value) are reported apart. The load generator shares the 2 cores
with the stack: while it runs, legacy gets less CPU than in step 2, so the true overload factor
is at least ``factor``.

Writes bench/results/overload.json. Needs aiohttp (`make bench-tools`), PostgreSQL and Redis.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import threading
import time
import tomllib
from collections import Counter
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import _replay_load as load
from bench._replay_probe import LEGACY_LOG_FORMAT, parse_gateway, parse_legacy_line
from bench._replay_report import Outcome, classify
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
from bench.incident_replay import REDIS_URL, SHIPPED_TABLE, table_for, to_toml

NEEDS = Needs(modules=("aiohttp",), redis=True, postgres=True)  # taskset: util-linux, always there
VAR = ROOT / "var" / "bench"
WARMUP_S = 2.0  # the limit starts at initial_limit and learns legacy's latency in its first seconds
CAPACITY_CLIENTS = 8
# --mix: the replay's reads, or only recommendations.home (legacy ranks every in-stock item in Python:
# its slowest hot read, so 3x its capacity is a few hundred req/s and the generator and the gateways
# take a smaller share of their core).
MIXES: dict[str, tuple[tuple[str, int], ...]] = {"reads": load.READ_MIX, "home": (("home", 1),)}


def _path(kind: str, rng: random.Random) -> str:
    item = rng.randint(*load.READ_ITEMS)
    return {
        "list": f"/api/v1/reviews/items/{item}?size=20",
        "summary": f"/api/v1/reviews/items/{item}/summary",
        "home": "/api/v1/recommendations/home?limit=10",
        "detail": f"/api/v1/reviews/{rng.randint(1, 20000)}",
    }[kind]


async def _closed_loop(
    gateway: str,
    tokens: list[str],
    clients: int,
    seconds: float,
    mix: Sequence[tuple[str, int]],
    label: str = "warm",
) -> list[float]:
    """``clients`` each sending the read mix back to back for ``seconds``: every latency in ms (an
    answer other than 2xx/4xx stops the run: the capacity of a backend that fails is not one)."""
    import aiohttp

    kinds = [name for name, weight in mix for _ in range(weight)]
    latencies: list[float] = []
    until = time.monotonic() + seconds
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:

        async def client(seed: int) -> None:
            rng = random.Random(seed)  # noqa: S311 - a load mix, not security
            while time.monotonic() < until:
                headers = {
                    "Authorization": f"Bearer {rng.choice(tokens)}",
                    "X-Request-Id": f"{label}-{seed}-{len(latencies)}",
                }
                sent = time.monotonic()
                async with session.get(gateway + _path(rng.choice(kinds), rng), headers=headers) as response:
                    await response.read()
                    if response.status >= 500:
                        raise SystemExit(f"legacy answered {response.status} while measuring its capacity")
                latencies.append((time.monotonic() - sent) * 1000)

        await asyncio.gather(*(client(seed) for seed in range(clients)))
    return latencies


def _table(on: bool, limiter: dict[str, float]) -> Path:
    """The shipped route table (limit on, with ``limiter`` settings changed if any), or the same
    with legacy's limit off."""
    if on and not limiter:
        return SHIPPED_TABLE
    shipped = tomllib.loads(SHIPPED_TABLE.read_text(encoding="utf-8"))
    document = table_for("b" if on else "a", shipped, load.QUICK)
    if on:
        legacy = document["clusters"][document.get("default_cluster", "legacy")]
        legacy["limiter"] = {**legacy["limiter"], **limiter}
    table = VAR / f"overload-{'on' if on else 'off'}-routes.toml"
    table.write_text(to_toml(document), encoding="utf-8")
    return table


def _limiter_setting(text: str) -> tuple[str, float]:
    name, _, value = text.partition("=")
    try:
        return name.strip(), (int(value) if value.strip().isdigit() else float(value))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=NUMBER") from None


def _legacy_ms(log: Path) -> dict[str, float]:
    """Request id → milliseconds legacy spent on it, from its access log."""
    lines = (parse_legacy_line(line, 0.0) for line in log.read_text(errors="replace").splitlines())
    return {line.request_id: line.ms for line in lines if line is not None}


def _phase(results: list[Outcome], start: float, end: float, legacy_ms: dict[str, float]) -> dict[str, Any]:
    chosen = [o for o in results if start <= o.sent < end]
    inside = [legacy_ms[o.request_id] for o in chosen if classify(o) == "ok" and o.request_id in legacy_ms]
    classes = Counter(classify(o) for o in chosen)
    shed = [o for o in chosen if classify(o) == "shed"]
    admitted = [o.ms for o in chosen if classify(o) == "ok"]
    total = max(1, len(chosen))
    return {
        "requests": len(chosen),
        "admitted": classes["ok"],
        "timeout_rate": classes["timeout"] / total,
        "shed_rate": classes["shed"] / total,
        "other_error_rate": (classes["unavailable"] + classes["other"]) / total,
        "shed_without_retry_after": sum(1 for o in shed if not o.retry_after),
        "p99_shed_ms": latency_summary([o.ms for o in shed])["p99_ms"] if shed else None,
        "p99_admitted_ms": latency_summary(admitted)["p99_ms"] if admitted else None,
        "legacy_p99_admitted_ms": latency_summary(inside)["p99_ms"] if inside else None,
    }


def _spread(values: list[float]) -> dict[str, float] | None:
    return {"min": min(values), "median": statistics.median(values), "max": max(values)} if values else None


def _overload(
    gateway: str,
    tokens: list[str],
    rps: float,
    seconds: int,
    mix: Sequence[tuple[str, int]],
    label: str,
    legacy_log: Path,
) -> dict[str, Any]:
    timeline = load.Timeline(
        calm_s=0, ramp_s=0.5, spike_rps=rps, flip_at_s=seconds + 1, spike_end_s=seconds + 1, seconds=seconds
    )
    start_at = time.monotonic() + 0.3
    gauges: list[dict[str, float]] = []
    stop = threading.Event()

    def sample_limit() -> None:
        import httpx

        while not stop.wait(0.25):
            figures = parse_gateway(httpx.get(f"{gateway}/_gateway/metrics", timeout=5).text)
            if "limit" in figures and time.monotonic() - start_at >= WARMUP_S:
                gauges.append(figures)

    sampler = threading.Thread(target=sample_limit, daemon=True)
    sampler.start()
    try:
        results, _, lag = load.run(gateway, tokens, timeline, start_at, label, "", [], mix=mix)
    finally:
        stop.set()
        sampler.join()
    time.sleep(0.5)  # legacy's last log lines
    legacy_ms = _legacy_ms(legacy_log)
    return {
        "legacy_limit_after_warmup": _spread([g["limit"] for g in gauges]),
        "legacy_in_flight_after_warmup": _spread([g["in_flight"] for g in gauges]),
        "offered_rps": rps,
        "whole": _phase(results, 0, seconds, legacy_ms),
        "after_warmup": _phase(results, WARMUP_S, seconds, legacy_ms),
        "finished_rps": round(
            sum(1 for o in results if classify(o) == "ok" and o.sent >= WARMUP_S) / (seconds - WARMUP_S), 1
        ),
        "generator_lag_ms_max": round(max(lag, default=0.0), 1),
    }


def _cpus() -> tuple[set[int], set[int]]:
    """Legacy on the first CPU alone, the gateways and this load generator on the others, so that
    legacy's own speed is the same unloaded and under the overload (else the generator and the
    gateway take its CPU and its latency grows whatever the limit does). One CPU: all share it."""
    cpus = sorted(os.sched_getaffinity(0))
    return ({cpus[0]}, set(cpus[1:])) if len(cpus) > 1 else (set(cpus), set(cpus))


def _pinned(cpus: set[int]) -> list[str]:
    return ["taskset", "-c", ",".join(map(str, sorted(cpus)))]


def one_run(
    env: dict[str, str],
    factor: float,
    seconds: int,
    tokens: list[str],
    limiter: dict[str, float],
    mix: Sequence[tuple[str, int]],
) -> dict[str, Any]:
    """One legacy, two gateways in front of it (legacy's limit off, and on as shipped)."""
    ports = {name: free_port() for name in ("legacy", "off", "on")}
    legacy_env = {**env, "LEGACY_URL": f"http://127.0.0.1:{ports['legacy']}"}
    legacy_log = VAR / "overload-legacy-access.log"
    legacy_log.unlink(missing_ok=True)
    legacy_cpus, other_cpus = _cpus()
    commands = {
        "legacy": [
            *_pinned(legacy_cpus),
            *legacy_command(ports["legacy"], workers=1, threads=2),
            f"--access-logfile={legacy_log}",
            f"--access-logformat={LEGACY_LOG_FORMAT}",
        ]
    }
    envs = {"legacy": legacy_env}
    for name in ("off", "on"):
        commands[name] = [*_pinned(other_cpus), sys.executable, "-m", "gateway"]
        envs[name] = {
            **legacy_env,
            "ROUTES_FILE": str(_table(name == "on", limiter)),
            "GATEWAY_PORT": str(ports[name]),
            "VAR_DIR": str(VAR / f"overload-gateway-{name}"),
        }
    os.sched_setaffinity(0, other_cpus)
    with ExitStack() as stack:
        urls = {
            name: stack.enter_context(
                server_process(commands[name], envs[name], ports[name], log=VAR / f"overload-{name}.log")
            )[0]
            for name in commands
        }
        if not tokens:
            tokens += load.sign_in(urls["off"], 20)
        asyncio.run(_closed_loop(urls["off"], tokens, CAPACITY_CLIENTS, 2, mix))  # warm caches and pools
        asyncio.run(_closed_loop(urls["on"], tokens, 1, 1, mix))
        unloaded = latency_summary(asyncio.run(_closed_loop(urls["off"], tokens, 1, 8, mix, "unloaded")))
        time.sleep(0.5)  # legacy's last log lines
        inside = [
            ms for request_id, ms in _legacy_ms(legacy_log).items() if request_id.startswith("unloaded-")
        ]
        legacy_unloaded = latency_summary(inside)
        measured = asyncio.run(_closed_loop(urls["off"], tokens, CAPACITY_CLIENTS, 8, mix))
        capacity = len(measured) / 8
        offered = round(capacity * factor, 1)
        print(
            f"  legacy unloaded p50 {unloaded['p50_ms']:.1f} ms, p99 {unloaded['p99_ms']:.1f} ms; "
            f"inside legacy p99 {legacy_unloaded['p99_ms']:.1f} ms; capacity {capacity:.0f} req/s; "
            f"offering {offered:.0f} req/s ({factor:g}x)",
            flush=True,
        )
        phases = {}
        for name in ("off", "on"):
            time.sleep(3)  # legacy idle again: the previous phase's backlog has drained
            phases[name] = _overload(urls[name], tokens, offered, seconds, mix, name, legacy_log)
            _print_phase(f"limit {name}", phases[name], unloaded, legacy_unloaded)
    return {
        "unloaded": unloaded,
        "legacy_unloaded": legacy_unloaded,
        "capacity_rps": round(capacity, 1),
        "capacity_p99_ms": latency_summary(measured)["p99_ms"],
        "factor": factor,
        "phases": phases,
    }


def _print_phase(
    title: str, phase: dict[str, Any], unloaded: dict[str, float], legacy_unloaded: dict[str, float]
) -> None:
    steady = phase["after_warmup"]
    whole = phase["whole"]
    ratio = steady["p99_admitted_ms"] / unloaded["p99_ms"] if steady["p99_admitted_ms"] else float("nan")
    shed_p99 = f"{steady['p99_shed_ms']:.0f} ms" if steady["p99_shed_ms"] is not None else "-"
    print(
        f"  {title}: timeouts {100 * steady['timeout_rate']:.2f} % (whole phase "
        f"{100 * whole['timeout_rate']:.2f} %), shed {100 * steady['shed_rate']:.1f} % (p99 {shed_p99}, "
        f"{steady['shed_without_retry_after']} without Retry-After), other errors "
        f"{100 * steady['other_error_rate']:.2f} %, admitted p99 {steady['p99_admitted_ms'] or 0:.0f} ms "
        f"= {ratio:.2f}x unloaded p99 (inside legacy {steady['legacy_p99_admitted_ms'] or 0:.0f} ms = "
        f"{(steady['legacy_p99_admitted_ms'] or 0) / legacy_unloaded['p99_ms']:.2f}x); "
        f"legacy finished {phase['finished_rps']} req/s; "
        f"limit (sum over workers) {phase['legacy_limit_after_warmup']}, "
        f"in flight {phase['legacy_in_flight_after_warmup']}",
        flush=True,
    )


def verdict(run: dict[str, Any]) -> dict[str, bool]:
    """The issue's three bounds, on the limited phase after its warm-up."""
    steady = run["phases"]["on"]["after_warmup"]
    return {
        "timeouts_below_1_percent": steady["timeout_rate"] < 0.01,
        "shed_within_100_ms_with_retry_after": steady["shed_rate"] == 0
        or (steady["p99_shed_ms"] < 100 and steady["shed_without_retry_after"] == 0),
        "admitted_p99_within_2x_unloaded": steady["p99_admitted_ms"] is not None
        and steady["p99_admitted_ms"] <= 2 * run["unloaded"]["p99_ms"],
    }


def _ms(value: float | None) -> str:
    return f"{value:.0f}" if value is not None else "-"


def markdown(summary: dict[str, Any]) -> str:
    """One row per run and phase: what clients got at ``factor`` x legacy's capacity."""
    rows = [
        "| run | limit | capacity req/s | offered req/s | timeouts | shed (p99 ms, without Retry-After) | "
        "admitted p99 ms (x unloaded) | inside legacy p99 ms (x unloaded) | legacy finished req/s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for number, run in enumerate(summary["runs"], 1):
        unloaded, inside = run["unloaded"]["p99_ms"], run["legacy_unloaded"]["p99_ms"]
        for name, phase in run["phases"].items():
            steady = phase["after_warmup"]
            admitted, legacy = steady["p99_admitted_ms"], steady["legacy_p99_admitted_ms"]
            rows.append(
                f"| {number} | {name} | {run['capacity_rps']:.0f} | {phase['offered_rps']:.0f} | "
                f"{100 * steady['timeout_rate']:.2f} % | {100 * steady['shed_rate']:.1f} % "
                f"({_ms(steady['p99_shed_ms'])}, {steady['shed_without_retry_after']}) | "
                f"{_ms(admitted)} ({(admitted or 0) / unloaded:.1f}x) | "
                f"{_ms(legacy)} ({(legacy or 0) / inside:.1f}x) | {phase['finished_rps']:.0f} |"
            )
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="12 s overload phases instead of 20 s")
    parser.add_argument("--factor", type=float, default=3.0, help="offered load / capacity (default 3)")
    parser.add_argument("--runs", type=int, default=1, help="independent runs, each on a fresh stack")
    parser.add_argument(
        "--mix", choices=sorted(MIXES), default="reads", help="the replay's reads (default) or home only"
    )
    parser.add_argument(
        "--limiter",
        type=_limiter_setting,
        action="append",
        default=[],
        metavar="NAME=NUMBER",
        help="change one of the shipped limiter settings for this run (repeatable)",
    )
    args = parser.parse_args()
    limiter = dict(args.limiter)
    require(NEEDS)
    VAR.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "DATABASE_URL": PG_BENCH_URL,
        "DJANGO_SETTINGS_MODULE": "legacy_django.config.django.local",
        "REDIS_URL": REDIS_URL,
        "UNLEASH_URL": "",
        "GATEWAY_WORKERS": "2",
        "VAR_DIR": str(VAR),
    }
    prepare_database(env, signing_keys=True)
    seconds = 12 if args.quick else 20
    tokens: list[str] = []
    runs = []
    for number in range(1, args.runs + 1):
        print(f"run {number}/{args.runs}", flush=True)
        run = one_run(env, args.factor, seconds, tokens, limiter, MIXES[args.mix])
        run["verdict"] = verdict(run)
        runs.append(run)
    met = sum(all(run["verdict"].values()) for run in runs)
    ratios = [
        run["phases"]["on"]["after_warmup"]["p99_admitted_ms"] / run["unloaded"]["p99_ms"]
        for run in runs
        if run["phases"]["on"]["after_warmup"]["p99_admitted_ms"]
    ]
    summary = {
        "legacy_capacity": "gunicorn 1 worker x 2 threads",
        "factor": args.factor,
        "mix": args.mix,
        "limiter_changes": limiter,
        "phase_seconds": seconds,
        "runs": runs,
        "runs_meeting_all_bounds": met,
        "median_admitted_p99_ratio": round(statistics.median(ratios), 2) if ratios else None,
    }
    path = write_result("overload", summary)
    print(markdown(summary))
    print(f"{met} of {len(runs)} run(s) met every bound; wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
