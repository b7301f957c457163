"""The benchmark harness parses wrk output and its scripts start (the benchmarks run only in make bench)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench._support import parse_wrk

ROOT = Path(__file__).resolve().parents[2]
WRK_OUTPUT = """Running 3s test @ http://127.0.0.1:8000/api/v1/reviews/items/1
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     9.81ms    3.10ms  40.12ms   80.00%
  Latency Distribution
     50%    9.59ms
     75%   11.00ms
     90%   13.00ms
     99%   22.74ms
  19506 requests in 3.00s, 21.50MB read
  Non-2xx or 3xx responses: 12
Requests/sec:   6502.01
Transfer/sec:      7.17MB
"""


def test_wrk_output_is_parsed():
    assert parse_wrk(WRK_OUTPUT) == {"rps": 6502.01, "p50_ms": 9.59, "p99_ms": 22.74, "non_2xx": 12.0}


def test_microsecond_and_second_latencies_are_converted():
    parsed = parse_wrk("     50%  850.00us\n     99%    1.20s\nRequests/sec: 10.5\n")
    assert (parsed["p50_ms"], parsed["p99_ms"], parsed["non_2xx"]) == (0.85, 1200.0, 0.0)


@pytest.mark.parametrize(
    "script",
    [
        "run_all.py",
        "proxy_overhead.py",
        "legacy_vs_service.py",
        "gateway_overhead.py",
        "flags_decision.py",
        "override_propagation.py",
        "transport_compare.py",
        "unleash_propagation.py",
        "incident_replay.py",
    ],
)
def test_every_benchmark_script_starts(script):
    result = subprocess.run(
        [sys.executable, f"bench/{script}", "--help"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "usage:" in result.stdout


def test_route_matching_benchmark_runs_and_reports_both_sizes():
    result = subprocess.run(
        [sys.executable, "bench/route_match.py"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    sizes = [line.split()[0] for line in result.stdout.splitlines()[1:]]
    assert sizes == ["10", "1000"]
