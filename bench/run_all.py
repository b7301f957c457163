"""``make bench``: every benchmark in one run, tables printed, JSON per scenario, a markdown summary.

    .venv/bin/python bench/run_all.py [--quick]

Scenarios (every script in bench/, each runnable alone): proxy overhead vs nginx, the gateway under
each server layer (uvicorn, granian ASGI and RSGI, native) vs nginx, legacy vs service
and gateway vs direct on PostgreSQL, upstream clients, route matching, flag decisions, override
propagation through Redis and through Unleash, the 8 pm spike replay in three modes, legacy at 3x
its capacity with its adaptive limit off and on, time-deal purchases with the incident's and the
shipped stock order, a payment provider outage with the distributor and with one provider. Ratios
are against baselines measured in the same run. Loopback only; bounded in time (--quick: about 9.5
min on 2 cores, 2.5 of them the spike replay, 1.5 the overload, 1 the time deal, 1 the payment
outage). Writes bench/results/summary.md.

Each script declares what it needs (``NEEDS``: `make bench` depends on `bench-tools` and
`node-deps` for them) and prepares its database itself; a missing prerequisite fails that
scenario with one line naming the make target, and the others still run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._replay_report import autopilot_rounds, markdown
from bench._support import PG_BENCH_URL, RESULTS
from bench.overload import markdown as overload_markdown
from bench.payment_outage import markdown as payment_outage_markdown


def _scenarios(quick: bool) -> list[tuple[str, list[str], dict[str, str]]]:
    short = "3" if quick else "8"
    pg_env = {"DATABASE_URL": PG_BENCH_URL}
    return [
        (
            "proxy_overhead",
            ["bench/proxy_overhead.py", "--duration", short, *([] if quick else ["--big"])],
            {},
        ),
        (
            "server_layer",
            [
                "bench/server_layer.py",
                "--duration",
                "3" if quick else "6",
                *([] if quick else ["--runs", "3"]),
            ],
            {},
        ),
        (
            "flamegraph",
            [
                "bench/flamegraph.py",
                "--out",
                str(RESULTS / "gateway-flame.svg"),
                "--seconds",
                "5" if quick else "10",
            ],
            {},
        ),
        ("legacy_vs_service", ["bench/legacy_vs_service.py", "--duration", "3" if quick else "6"], pg_env),
        ("gateway_overhead", ["bench/gateway_overhead.py", "--duration", "3" if quick else "6"], pg_env),
        ("transport_compare", ["bench/transport_compare.py", "--requests", "5000" if quick else "20000"], {}),
        ("route_match", ["bench/route_match.py"], {}),
        ("flags_decision", ["bench/flags_decision.py", "--calls", "20000" if quick else "100000"], {}),
        ("override_propagation", ["bench/override_propagation.py", "--flips", "50" if quick else "100"], {}),
        ("unleash_propagation", ["bench/unleash_propagation.py", "--flips", "6" if quick else "20"], {}),
        ("incident_replay", ["bench/incident_replay.py", *(["--quick"] if quick else [])], {}),
        ("overload", ["bench/overload.py", *(["--quick"] if quick else ["--runs", "3"])], {}),
        ("timedeal", ["bench/timedeal.py", *(["--quick"] if quick else [])], {}),
        ("rollout", ["bench/rollout.py", *(["--quick"] if quick else [])], {}),
        ("payment_outage", ["bench/payment_outage.py", *(["--quick"] if quick else [])], {}),
        ("catalog_view", ["bench/catalog_view.py", *(["--quick"] if quick else [])], pg_env),
    ]


def _table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _summary() -> str:
    parts = [
        "# Benchmark summary",
        "",
        f"Run at {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on "
        f"{os.cpu_count()} cores. Ratios are against a baseline measured in the same run.",
        "",
    ]
    proxy = _load("proxy_overhead")
    if proxy:
        parts += [
            "## Proxy overhead (x nginx proxy_pass, 1 worker each unless stated)",
            "",
            _table(
                ["setup", "req/s", "x nginx proxy", "p50 ms", "p99 ms", "CPU µs/req", "RSS MB"],
                [
                    [
                        name,
                        f"{r['rps']:.0f}",
                        f"{r['ratio_to_nginx_proxy']:.2f}",
                        f"{r['p50_ms']:.2f}",
                        f"{r['p99_ms']:.2f}",
                        f"{r['cpu_us_per_request']:.0f}",
                        f"{r['rss_mb']:.0f}",
                    ]
                    for name, r in proxy["rows"].items()
                ],
            ),
            "",
            f"Added p50 at light load (4 connections): {proxy['added_p50_ms_light']:.2f} ms.",
            "",
        ]
    layers = _load("server_layer")
    if layers:
        parts += ["## The gateway under each server layer (x nginx proxy_pass, same run)", ""]
        for run in layers["runs"]:
            load = ", ".join(f"{x:.2f}" for x in run["load_average_start"])
            parts += [
                f"Run {run['run']} (load average at the start {load}):",
                "",
                _table(
                    [
                        "setup",
                        "req/s",
                        "x nginx",
                        "p50 ms",
                        "p99 ms",
                        "CPU µs/req",
                        "x nginx CPU",
                        "RSS MB",
                        "added p50 ms, 4 conn.",
                    ],
                    [
                        [
                            name,
                            f"{r['rps']:.0f}",
                            f"{r['ratio_to_nginx_proxy']:.2f}",
                            f"{r['p50_ms']:.2f}",
                            f"{r['p99_ms']:.2f}",
                            f"{r['cpu_us_per_request']:.0f}",
                            f"{r['cpu_ratio_to_nginx_proxy']:.1f}",
                            f"{r['rss_mb']:.0f}",
                            f"{r['added_p50_ms_light']:.2f}",
                        ]
                        for name, r in run["rows"].items()
                    ],
                ),
                "",
            ]
    legacy = _load("legacy_vs_service")
    if legacy:
        parts += [
            "## Legacy vs service (PostgreSQL, one worker each)",
            "",
            _table(
                ["route", "legacy req/s", "service req/s", "x legacy", "legacy p99 ms", "service p99 ms"],
                [
                    [
                        r["route"],
                        f"{r['legacy']['rps']:.0f}",
                        f"{r['service']['rps']:.0f}",
                        f"{r['ratio']:.1f}",
                        f"{r['legacy']['p99_ms']:.1f}",
                        f"{r['service']['p99_ms']:.1f}",
                    ]
                    for r in legacy["results"]
                ],
            ),
            "",
        ]
    gateway = _load("gateway_overhead")
    if gateway:
        parts += [
            "## Gateway vs the service directly (PostgreSQL, one worker each)",
            "",
            _table(
                ["route", "direct req/s", "gateway req/s", "x direct", "direct p50 ms", "gateway p50 ms"],
                [
                    [
                        r["route"],
                        f"{r['direct']['rps']:.0f}",
                        f"{r['gateway']['rps']:.0f}",
                        f"{r['ratio']:.2f}",
                        f"{r['direct']['p50_ms']:.2f}",
                        f"{r['gateway']['p50_ms']:.2f}",
                    ]
                    for r in gateway["results"]
                ],
            ),
            "",
        ]
    transport = _load("transport_compare")
    if transport:
        parts += [
            "## Upstream clients",
            "",
            _table(
                ["client", "req/s", "client CPU µs/req"],
                [
                    [name, f"{r['rps']:.0f}", f"{r['cpu_us_per_request']:.1f}"]
                    for name, r in transport["results"].items()
                ],
            ),
            "",
        ]
    routes = _load("route_match")
    if routes:
        per_size = ", ".join(f"{ns:.0f} ns with {size} routes" for size, ns in routes["ns_per_match"].items())
        parts += ["## Route matching", "", f"One match: {per_size}.", ""]
    flags = _load("flags_decision")
    if flags:
        parts += [
            "## Flag decision",
            "",
            _table(
                ["evaluator", "p50 µs", "p99 µs"],
                [
                    ["flags.decide", f"{flags['ours']['p50_us']:.2f}", f"{flags['ours']['p99_us']:.2f}"],
                    [
                        "UnleashClient.is_enabled",
                        f"{flags['unleash_client']['p50_us']:.2f}",
                        f"{flags['unleash_client']['p99_us']:.2f}",
                    ],
                ],
            ),
            "",
            f"Ratio at p50: {flags['ratio_p50']:.1f}x.",
            "",
        ]
    propagation = _load("override_propagation")
    if propagation:
        parts += [
            "## Override propagation through Redis",
            "",
            f"{propagation['flips']} flips x {propagation['workers']} worker processes: p50 "
            f"{propagation['p50_ms']:.2f} ms, p99 {propagation['p99_ms']:.2f} ms, "
            f"max {propagation['max_ms']:.2f} ms.",
            "",
        ]
    unleash = _load("unleash_propagation")
    if unleash:
        parts += [
            f"For comparison, a change made in Unleash reaches {unleash['providers']} providers polling "
            f"every {unleash['refresh_seconds']:.0f} s in p50 {unleash['p50_ms']:.0f} ms, "
            f"p99 {unleash['p99_ms']:.0f} ms ({unleash['flips']} flips); at the default 15 s refresh, "
            "up to ~16 s.",
            "",
        ]
    incident = _load("incident_replay")
    if incident:
        timeline = incident["timeline"]
        parts += [
            "## Incident replay: the 8 pm push spike, three modes",
            "",
            f"Legacy capacity {incident['legacy_capacity']}; spike {incident['spike_rps']:.0f} req/s from "
            f"{timeline['calm_s']:.0f} s to {timeline['spike_end_s']:.0f} s; modes a and b: "
            f"`flagctl flip-all --to candidate` at {timeline['flip_at_s']:.0f} s; mode c: nobody flips, the "
            "autopilot moves parity-proven routes. Errors, 503s, timeouts and p99 admitted: requests sent "
            "from the start of the spike to the move. Recovery: from the move being in the override store "
            f"until every 1 s window of the next 3 s has < 0.1 % errors and p99 < "
            f"{incident['p99_bound_ms']:.0f} ms.",
            "",
            markdown(incident["modes"]),
            "",
            *[_after_line(mode) for mode in incident["modes"] if mode.get("after_event")],
            "",
            "![incident replay](incident_replay.png)",
            "",
        ]
    overload = _load("overload")
    if overload:
        parts += [
            f"## Legacy at {overload['factor']:g}x its capacity ({overload['legacy_capacity']}), "
            "limit off and on",
            "",
            "Unloaded p99 and capacity measured in the same run; figures after the first 2 s of each phase.",
            "",
            overload_markdown(overload),
            "",
        ]
    timedeal = _load("timedeal")
    if timedeal:
        settings = timedeal["settings"]
        parts += [
            f"## Time deal: {settings['buyers']} concurrent buyers, PostgreSQL, per stock strategy",
            "",
            _table(
                [
                    "strategy",
                    "placed",
                    "sold out",
                    "5xx",
                    "deadlocks",
                    "p50 ms",
                    "p99 ms",
                    "orders/s",
                    "invariants",
                ],
                [
                    [
                        r["strategy"],
                        str(r["placed"]),
                        str(r["sold_out"]),
                        str(r["5xx"]),
                        str(r["deadlocks"]),
                        f"{r['p50_ms']:.0f}",
                        f"{r['p99_ms']:.0f}",
                        f"{r['orders_per_s']:.1f}",
                        "hold" if r["invariants"]["hold"] else "broken",
                    ]
                    for r in timedeal["results"]
                ],
            ),
            "",
        ]
    rollout = _load("rollout")
    if rollout:
        healthy, altered = rollout["healthy"], rollout["one_field_on_1_percent"]
        parts += [
            f"## Rollout of reviews.summary under {rollout['settings']['rps']:.0f} req/s "
            f"({' '.join(rollout['settings']['steps'])})",
            "",
            f"Healthy candidate: {healthy['state']} in {healthy['seconds']} s, client errors "
            f"{healthy['clients_before']['errors']} before / {healthy['clients_during']['errors']} during. "
            f"One field changed on 1 % of answers: {altered['state']} at "
            f"{altered['rolled_back_at_percent']} % after {altered['after_s']} s and {altered['compared']} "
            f"compared samples ({altered['first_difference']}).",
            "",
        ]
    outage = _load("payment_outage")
    if outage:
        settings = outage["settings"]
        parts += [
            f"## Payment provider outage: {settings['payments']} payments at {settings['rate_per_s']:.0f}/s, "
            "A ok / down / answers lost, then back",
            "",
            payment_outage_markdown(outage),
            "",
            "![payment outage](payment_outage.png)",
            "",
        ]
    return "\n".join(parts)


def _after_line(mode: dict) -> str:
    after, event = mode["after_event"], mode["event"]
    if event["command_at_s"] is not None:
        delay = event["in_store_at_s"] - event["command_at_s"]
        how = f"flagctl wrote the flip {delay:.1f} s after it was run; "
    else:
        rounds = autopilot_rounds(mode["moves"])
        how = (
            "the autopilot moved the routes at "
            + ", ".join(f"{t:.1f}" for t in rounds["to_candidate"])
            + " s and back at "
            + (", ".join(f"{t:.1f}" for t in rounds["back"]) or "no time")
            + " s; "
        )
    return (
        f"- {mode['key']}: {how}after the (first) move legacy still finished "
        f"{after['legacy_finished_after']} requests ({after['legacy_answered_elsewhere']} shadow copies, "
        f"{after['legacy_client_already_gone']} for clients that had given up), busy "
        f"{after['legacy_busy_s_after']} s, the last {after['legacy_last_finish_s']:.1f} s after the move; "
        f"load average at the start {mode['load_average_at_start'][0]:.2f}"
    )


def _load(name: str) -> dict | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true")
    quick = parser.parse_args().quick
    RESULTS.mkdir(parents=True, exist_ok=True)
    for stale in RESULTS.glob("*.json"):
        stale.unlink()
    failed = []
    for name, args, env in _scenarios(quick):
        print(f"\n== {name}", flush=True)
        started = time.monotonic()
        result = subprocess.run([sys.executable, *args], cwd=ROOT, env={**os.environ, **env}, check=False)
        print(f"   ({time.monotonic() - started:.0f}s)")
        if result.returncode != 0:
            failed.append(name)
    summary = RESULTS / "summary.md"
    summary.write_text(_summary())
    print(f"\nwrote {summary}")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
