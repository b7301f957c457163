"""The benchmark harness parses wrk output, runs every script with options it accepts, declares what
each needs where `make bench` provides it, and creates its database (no load is run here)."""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest

from bench import run_all
from bench._support import POSTGRES_ADDRESS, Needs, _reachable, ensure_database, missing, parse_wrk
from tests.conftest import require_service

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = sorted(p.stem for p in (ROOT / "bench").glob("*.py") if not p.name.startswith("_"))
BENCHMARKS = [name for name in SCRIPTS if name != "run_all"]
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


def _scenario_args() -> dict[str, list[list[str]]]:
    """script name -> the argument lists run_all passes it, quick and full."""
    args: dict[str, list[list[str]]] = {}
    for quick in (True, False):
        for _, command, _ in run_all._scenarios(quick):
            args.setdefault(Path(command[0]).stem, []).append(command[1:])
    return args


def test_run_all_runs_every_benchmark_script_once():
    scenarios = [Path(command[0]).stem for _, command, _ in run_all._scenarios(True)]
    assert sorted(scenarios) == BENCHMARKS


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_script_starts_alone_and_accepts_what_run_all_passes(script):
    result = subprocess.run(
        [sys.executable, f"bench/{script}.py", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "PATH": ""},  # --help needs neither wrk nor nginx nor node
    )
    assert result.returncode == 0, result.stderr
    assert "usage:" in result.stdout
    offered = set(re.findall(r"--[a-z][a-z-]*", result.stdout))
    for args in _scenario_args().get(script, []):
        assert {arg for arg in args if arg.startswith("--")} <= offered, (script, args)


def _bench_prerequisites() -> set[str]:
    makefile = (ROOT / "Makefile").read_text()
    match = re.search(r"^bench:(.*)$", makefile, re.MULTILINE)
    assert match, "no bench target in the Makefile"
    return set(match.group(1).split())


@pytest.mark.parametrize("script", BENCHMARKS)
def test_make_bench_provides_what_each_script_needs(script):
    needs = importlib.import_module(f"bench.{script}").NEEDS
    assert isinstance(needs, Needs)
    assert needs.make_targets() <= _bench_prerequisites()


def test_a_missing_prerequisite_is_one_line_naming_the_make_target(monkeypatch):
    assert missing(Needs(executables=("no-such-benchmark-tool",))) == (
        "no-such-benchmark-tool is not installed: run make bench-tools"
    )
    assert "run make bench-tools" in str(missing(Needs(modules=("no_such_benchmark_module",))))
    monkeypatch.setattr("bench._support.UNLEASH_PACKAGE", ROOT / "no-such-dir" / "package.json")
    assert "run make node-deps" in str(missing(Needs(unleash=True)))
    assert missing(Needs()) is None


def test_the_benchmark_database_is_created_when_missing():
    require_service(_reachable(*POSTGRES_ADDRESS), "PostgreSQL on 127.0.0.1:5432")
    name = f"bench_harness_{uuid.uuid4().hex[:8]}"
    admin = "postgresql://postgres@127.0.0.1:5432/postgres"
    try:
        ensure_database(f"postgres://postgres@127.0.0.1:5432/{name}")
        ensure_database(f"postgres://postgres@127.0.0.1:5432/{name}")  # already there: left alone
        with psycopg.connect(f"postgresql://postgres@127.0.0.1:5432/{name}") as connection:
            assert connection.execute("SELECT current_database()").fetchone() == (name,)
    finally:
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_route_matching_benchmark_runs_and_reports_both_sizes(tmp_path):
    result = subprocess.run(
        [sys.executable, "bench/route_match.py", "--calls", "2000"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "BENCH_RESULTS": str(tmp_path)},
    )
    assert result.returncode == 0, result.stderr
    sizes = [line.split()[0] for line in result.stdout.splitlines()[1:]]
    assert sizes == ["10", "1000"]
    assert (tmp_path / "route_match.json").exists()


def test_the_spike_replay_counts_only_creates_as_writes():
    from bench.incident_replay import _per_second, _writes

    results = [
        (0.1, 5.0, 200, False),
        (0.2, 2000.0, 0, False),  # a read that got no answer: not a write
        (0.3, 8.0, 201, True),
        (0.4, 2000.0, 0, True),  # a create that got no answer
        (1.5, 9.0, 503, True),
    ]
    assert _writes(results) == {"acknowledged_201": 1, "client_timeouts": 1, "attempted": 3}
    rows = _per_second(results, 2)
    assert [(r["requests"], r["errors"], r["no_answer"]) for r in rows] == [(4, 2, 2), (1, 1, 0)]
