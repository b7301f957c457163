"""The gateway under each HTTP server layer, as a ratio to nginx proxy_pass measured in the same run.

    .venv/bin/python bench/server_layer.py [--duration 6] [--connections 64] [--runs 3]

The setup of bench/proxy_overhead.py (one nginx, 1 worker, serves a ~1 KB JSON and the JWKS and is
also the proxy_pass baseline; the route needs a JWT and takes a flag decision; wrk -t2). The same
gateway (gateway/app.py), 1 worker, under each layer:

- uvicorn: ``GATEWAY_SERVER=uvicorn python -m gateway`` (uvicorn + gateway/server.py's limits and timeouts)
- granian ASGI: ``granian --interface asgi --factory gateway.app:create_app``
- granian RSGI: ``granian --interface rsgi --factory bench._rsgi:create_app`` (bench/_rsgi.py's adapter)
- native: ``GATEWAY_SERVER=native python -m gateway`` (gateway/http1.py), when that file exists

then the layer with the most req/s in that run with 2 workers. Each server is warmed up (1 s of
load: tokens verified, upstream connections open) before it is measured. Reported per setup: req/s
and its ratio to nginx proxy_pass (the mean of nginx measured at the start and at the end of the run),
p50/p99, CPU µs per request of the server's processes (from /proc, all its processes) and its ratio to
nginx's (nginx's figure includes its backend's work: one worker serves both), RSS of all its processes,
and p50 at light load (4 connections) with what it adds to nginx's. ``--runs N`` repeats the whole
comparison (the layers' order rotates from run to run) and prints every run with the load average.
Writes bench/results/server_layer.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._support import Needs, free_port, require, server_process, write_result, wrk
from bench.proxy_overhead import PATH, gateway_env, light_p50, measure, nginx_conf, prepare
from gateway.metrics import shared_figures_env

NEEDS = Needs(executables=("nginx", "wrk"), modules=("granian",))
NGINX, NGINX_END = "nginx proxy_pass", "nginx proxy_pass, at the end"

# A layer: (port, workers, work directory, environment) -> command and the environment to run it with.
Layer = Callable[[int, int, Path, dict[str, str]], tuple[list[str], dict[str, str]]]


def _python_m_gateway(server: str) -> Layer:
    def command(port: int, workers: int, work: Path, env: dict[str, str]) -> tuple[list[str], dict[str, str]]:
        # Named even for uvicorn: native is the default where gateway/http1.py exists (ADR 0020); a tree
        # without it ignores the variable.
        return [sys.executable, "-m", "gateway"], {**env, "GATEWAY_SERVER": server}

    return command


def _granian(interface: str, target: str) -> Layer:
    def command(port: int, workers: int, work: Path, env: dict[str, str]) -> tuple[list[str], dict[str, str]]:
        if workers > 1:  # what python -m gateway does for its workers: one set of figures for all
            env = {**env, **shared_figures_env(work / f"gateway-{port}")}
        return [
            sys.executable,
            "-m",
            "granian",
            f"--interface={interface}",
            "--factory",
            "--host=127.0.0.1",
            f"--port={port}",
            f"--workers={workers}",
            "--loop=uvloop",
            "--http=1",
            "--no-ws",
            "--log-level=warning",
            target,
        ], env

    return command


def layers() -> dict[str, Layer]:
    """Every layer measured."""
    return {
        "uvicorn": _python_m_gateway("uvicorn"),
        "granian ASGI": _granian("asgi", "gateway.app:create_app"),
        "granian RSGI": _granian("rsgi", "bench._rsgi:create_app"),
        "native": _python_m_gateway("native"),
    }


def _wait_ready(url: str, headers: Mapping[str, str]) -> None:
    """Until the gateway answers 200 (a server may accept connections before its workers have started)."""
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(url, headers=dict(headers), timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"{url} did not answer 200 within 30 s")
        time.sleep(0.2)


def _measure_server(
    url: str, pid: int, options: argparse.Namespace, headers: dict[str, str]
) -> dict[str, float]:
    _wait_ready(url, headers)
    wrk(url, duration=1, connections=options.connections, headers=headers, threads=2)  # warm-up
    row = measure(url, pid, options.duration, options.connections, headers)
    row["p50_ms_light"] = light_p50(url, options.duration, headers)
    row["load_1m"] = os.getloadavg()[0]
    return row


def one_run(index: int, options: argparse.Namespace, work: Path, auth: dict[str, str]) -> dict[str, Any]:
    available = list(layers())
    shift = index % len(available)
    order = available[shift:] + available[:shift]  # drift on a shared machine spreads over every layer
    load_start = os.getloadavg()
    backend, proxy = free_port(), free_port()
    conf = nginx_conf(work, backend, proxy)
    rows: dict[str, dict[str, float]] = {}
    with ExitStack() as stack:
        _, nginx_pid = stack.enter_context(
            server_process(["nginx", "-c", str(conf)], dict(os.environ), backend)
        )
        direct = f"http://127.0.0.1:{backend}"
        rows["backend direct (nginx)"] = _measure_server(f"{direct}{PATH}", nginx_pid, options, auth)
        rows[NGINX] = _measure_server(f"http://127.0.0.1:{proxy}{PATH}", nginx_pid, options, auth)

        def gateway(name: str, workers: int) -> dict[str, float]:
            port = free_port()
            layer = layers()[name]
            assert layer is not None
            command, env = layer(port, workers, work, gateway_env(work, port, workers, direct))
            with server_process(command, env, port) as (url, pid):
                return _measure_server(f"{url}{PATH}", pid, options, auth)

        for name in order:
            rows[f"{name}, 1 worker"] = gateway(name, 1)
        best = max(order, key=lambda name: rows[f"{name}, 1 worker"]["rps"])
        rows[f"{best}, 2 workers"] = gateway(best, 2)
        rows[NGINX_END] = _measure_server(f"http://127.0.0.1:{proxy}{PATH}", nginx_pid, options, auth)
    baseline = {
        key: (rows[NGINX][key] + rows[NGINX_END][key]) / 2
        for key in ("rps", "cpu_us_per_request", "p50_ms_light")
    }
    for row in rows.values():
        row["ratio_to_nginx_proxy"] = row["rps"] / baseline["rps"]
        row["cpu_ratio_to_nginx_proxy"] = row["cpu_us_per_request"] / baseline["cpu_us_per_request"]
        row["added_p50_ms_light"] = row["p50_ms_light"] - baseline["p50_ms_light"]
    return {
        "run": index + 1,
        "order": order,
        "best_1_worker": best,
        "load_average_start": load_start,
        "load_average_end": os.getloadavg(),
        "nginx_baseline": baseline,
        "rows": rows,
    }


def print_run(run: Mapping[str, Any]) -> None:
    start, end = run["load_average_start"], run["load_average_end"]
    print(
        f"\nrun {run['run']} (order {', '.join(run['order'])}; load average "
        f"{' '.join(f'{x:.2f}' for x in start)} at the start, {' '.join(f'{x:.2f}' for x in end)} at the end)"
    )
    print(
        f"{'setup':<32}{'req/s':>8}{'x nginx':>9}{'p50 ms':>8}{'p99 ms':>8}{'CPU µs/req':>12}"
        f"{'x nginx':>9}{'RSS MB':>8}{'p50 4c':>8}{'added':>7}{'load':>6}"
    )
    for name, row in run["rows"].items():
        print(
            f"{name:<32}{row['rps']:>8.0f}{row['ratio_to_nginx_proxy']:>9.2f}{row['p50_ms']:>8.2f}"
            f"{row['p99_ms']:>8.2f}{row['cpu_us_per_request']:>12.1f}{row['cpu_ratio_to_nginx_proxy']:>9.2f}"
            f"{row['rss_mb']:>8.0f}{row['p50_ms_light']:>8.2f}{row['added_p50_ms_light']:>7.2f}"
            f"{row['load_1m']:>6.2f}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=6)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--runs", type=int, default=1)
    options = parser.parse_args()
    require(NEEDS)
    print(f"{os.cpu_count()} cores; the machine may be shared: see each run's load average")
    work = Path(tempfile.mkdtemp(prefix="server-layer-bench-"))
    auth = prepare(work)
    runs = []
    for index in range(options.runs):
        run = one_run(index, options, work, auth)
        print_run(run)
        runs.append(run)
    write_result(
        "server_layer",
        {"settings": vars(options), "cpus": os.cpu_count(), "runs": runs},
    )
    failed = {
        f"run {run['run']}: {name}": row["non_2xx"]
        for run in runs
        for name, row in run["rows"].items()
        if row["non_2xx"]
    }
    if failed:
        print(f"error: non-2xx answers, the numbers are void: {failed}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
