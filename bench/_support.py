"""Shared by the benchmarks: start servers on free ports, run wrk, parse its numbers."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"


def legacy_command(port: int, workers: int = 1, threads: int = 4) -> list[str]:
    """The monolith as make run serves it (gunicorn gthread), on ``port``."""
    return [
        str(Path(sys.executable).parent / "gunicorn"),
        "legacy_django.config.wsgi:application",
        f"--bind=127.0.0.1:{port}",
        "--worker-class=gthread",
        f"--workers={workers}",
        f"--threads={threads}",
        "--no-control-socket",
    ]


def write_result(name: str, data: object) -> Path:
    """bench/results/<name>.json"""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=2))
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def server_process(command: list[str], env: Mapping[str, str], port: int) -> Iterator[tuple[str, int]]:
    """Start ``command``; yields its URL (once ``port`` accepts) and its pid; stops it after."""
    quiet = subprocess.DEVNULL
    process = subprocess.Popen(command, env=dict(env), cwd=ROOT, stdout=quiet, stderr=quiet)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"{command[0]} did not start") from None
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}", process.pid
    finally:
        process.terminate()
        process.wait(timeout=10)


@contextmanager
def server(command: list[str], env: Mapping[str, str], port: int) -> Iterator[str]:
    with server_process(command, env, port) as (url, _):
        yield url


def wrk(
    url: str, *, duration: int, connections: int, headers: Mapping[str, str] | None = None, threads: int = 1
) -> dict[str, float]:
    """req/s, p50 and p99 in ms, and non-2xx count from one wrk run."""
    args = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency"]
    for name, value in (headers or {}).items():
        args += ["-H", f"{name}: {value}"]
    output = subprocess.run([*args, url], capture_output=True, text=True, check=True).stdout
    return parse_wrk(output)


def parse_wrk(output: str) -> dict[str, float]:
    """req/s, p50 and p99 in ms, and the non-2xx count from wrk's --latency output."""
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}

    def latency(label: str) -> float:
        match = re.search(rf"{label}\s+([\d.]+)(us|ms|s)", output)
        return float(match.group(1)) * scale[match.group(2)] if match else float("nan")

    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return {
        "rps": float(rps.group(1)) if rps else 0.0,
        "p50_ms": latency("50%"),
        "p99_ms": latency("99%"),
        "non_2xx": float(non_2xx.group(1)) if non_2xx else 0.0,
    }


def latency_summary(samples_ms: list[float]) -> dict[str, float]:
    """p50, p99 and max of a list of latencies in milliseconds."""
    ordered = sorted(samples_ms)
    return {
        "p50_ms": ordered[len(ordered) // 2],
        "p99_ms": ordered[int(len(ordered) * 0.99)],
        "max_ms": ordered[-1],
    }
