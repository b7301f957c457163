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


def _outcome(sent, ms, status, kind="list", **fields):
    from bench._replay_report import Outcome

    return Outcome(sent, ms, status, kind, **fields)


def test_the_spike_replay_sorts_errors_into_fast_503s_timeouts_and_others():
    from bench._replay_report import per_second, window

    results = [
        _outcome(0.1, 5.0, 200, served_by="legacy"),
        _outcome(0.2, 2000.0, 0, code="client_timeout"),
        _outcome(0.3, 4.0, 503, code="overloaded"),
        _outcome(0.4, 30.0, 503, code="deadline_exceeded"),
        _outcome(0.5, 7.0, 0, code="ServerDisconnectedError"),
        _outcome(1.5, 9.0, 404, served_by="reviews"),
        _outcome(1.6, 12.0, 502, code="bad_gateway"),
    ]
    first = window(results, 0, 1)
    assert (first["requests"], first["errors"], first["shed"], first["unavailable"]) == (5, 4, 1, 1)
    assert (first["timeout"], first["other"], first["p99_503_ms"], first["p99_admitted_ms"]) == (
        1,
        1,
        30.0,
        5.0,
    )
    rows = per_second(results, 2)
    assert [(r["requests"], r["errors"], r["no_answer"]) for r in rows] == [(5, 4, 2), (2, 1, 0)]
    assert [(r["ok_legacy"], r["ok_candidate"]) for r in rows] == [(1, 0), (0, 1)]


def test_the_spike_replay_checks_every_201_is_stored_once_and_no_shed_create_is():
    from bench._replay_report import writes, writes_ok

    results = [
        _outcome(0.1, 5.0, 200),  # a read: not a write
        _outcome(0.2, 8.0, 201, "create", write_id="w1"),
        _outcome(0.3, 2000.0, 0, "create", code="client_timeout", write_id="w2"),
        _outcome(0.4, 3.0, 503, "create", code="overloaded", write_id="w3"),
        _outcome(0.5, 9.0, 201, "create", write_id="w4"),
    ]
    clean = writes(results, ["w1", "w2", "w4"])  # the timed-out create was written: allowed
    assert clean["attempted"] == 4 and clean["acknowledged_201"] == 2 and clean["client_timeouts"] == 1
    assert (clean["written_unacknowledged"], writes_ok(clean)) == (1, True)
    assert writes(results, ["w1", "w1", "w4"])["duplicates"] == 1
    assert writes(results, ["w1"])["acknowledged_missing"] == 1
    assert not writes_ok(writes(results, ["w1", "w3", "w4"]))  # a shed create was written


def test_the_spike_replay_times_recovery_to_a_tenth_of_a_second():
    from bench._replay_report import recovery

    # Every 10 ms for 6 s; the clients time out until 1.35 s, then get fast answers.
    results = [
        _outcome(n / 100, 2000.0, 0, code="client_timeout") if n < 135 else _outcome(n / 100, 20.0, 200)
        for n in range(600)
    ]
    assert recovery(results, 0.0, 6.0) == 1.4  # whole-second buckets would say 2
    assert recovery(results, 0.0, 4.0) is None  # the three healthy seconds do not fit before 4 s
    slow = [_outcome(n / 100, 600.0, 200) for n in range(600)]
    assert recovery(slow, 0.0, 6.0) is None  # no errors, but p99 above 500 ms


def test_the_spike_replay_counts_the_seconds_a_recovery_did_not_hold():
    from bench._replay_report import per_second, unsteady_seconds, window

    # Healthy, except a relapse (timeouts) in second 4; the routes moved at 1.3 s, the spike ends at 6.
    results = [
        _outcome(n / 100, 2000.0, 0, code="client_timeout")
        if 400 <= n < 420
        else _outcome(n / 100, 20.0, 200)
        for n in range(700)
    ]
    mode = {
        "event": {"in_store_at_s": 1.3},
        "per_second": per_second(results, 7),
        "spike": window(results, 0, 6),
    }
    assert unsteady_seconds(mode) == 1
    assert unsteady_seconds({**mode, "event": {"in_store_at_s": None}}) is None


def test_the_spike_replay_route_tables_turn_protection_and_autopilot_on_and_off(tmp_path):
    import tomllib

    from bench import incident_replay
    from bench._replay_load import QUICK
    from gateway.routes import load_table

    shipped = tomllib.loads(incident_replay.SHIPPED_TABLE.read_text(encoding="utf-8"))
    tables = {}
    for mode in "abc":
        path = tmp_path / f"{mode}.toml"
        path.write_text(incident_replay.to_toml(incident_replay.table_for(mode, shipped, QUICK)))
        tables[mode] = load_table(path, {})
    assert tables["a"].clusters["legacy"].limit is None
    assert tables["b"].clusters["legacy"].limit is not None
    assert not tables["b"].autopilot or not tables["b"].autopilot.enabled
    autopilot = tables["c"].autopilot
    assert autopilot is not None and autopilot.enabled and autopilot.shed_window_seconds == 2
    offloaded = {route.id for route in tables["c"].routes if route.auto_offload and route.shadow_rate > 0}
    assert offloaded == set(incident_replay.HOT_READS)
    assert tables["c"].by_id("reviews.create").auto_offload is False


def test_the_spike_replay_probe_reads_sockets_and_the_gateways_figures():
    from bench._replay_probe import parse_gateway, parse_legacy_line, parse_sockets

    # /proc/net/tcp: legacy listens on 8001 (0x1F41) with 2 connections not accepted yet; one open
    # connection has unread request bytes, one the gateway already closed (CLOSE_WAIT) has too.
    table = "\n".join(
        [
            "  sl  local_address rem_address   st tx_queue rx_queue",
            "   0: 0100007F:1F41 00000000:0000 0A 00000000:00000002",
            "   1: 0100007F:1F41 0100007F:9C40 01 00000000:000001A0",
            "   2: 0100007F:1F41 0100007F:9C41 08 00000000:000001A0",
            "   3: 0100007F:1F41 0100007F:9C42 01 00000000:00000000",
            "   4: 0100007F:9C40 0100007F:1F41 01 00000000:00000000",  # the gateway's end: not legacy's
        ]
    )
    assert parse_sockets(table, 8001) == {"open": 3, "unread": 2, "abandoned_unread": 1, "backlog": 2}
    scrape = (
        'gateway_concurrency_limit{cluster="legacy"} 38.0\n'
        'gateway_concurrency_in_flight{cluster="legacy"} 12.0\n'
        'gateway_concurrency_queued{cluster="legacy"} 3.0\n'
        'gateway_shed_total{cluster="legacy",route="reviews.list"} 40.0\n'
        'gateway_shed_total{cluster="legacy",route="reviews.summary"} 2.0\n'
        'gateway_concurrency_limit{cluster="reviews"} 99.0\n'
        'gateway_fallbacks_total{route="reviews.list"} 7.0\n'
        'gateway_flag_decisions_total{route="reviews.list",backend="legacy",reason="circuit_open"} 5.0\n'
        'gateway_flag_decisions_total{route="reviews.list",backend="candidate",reason="override"} 9.0\n'
        'gateway_upstream_errors_total{cluster="reviews",stage="response_headers"} 4.0\n'
        'gateway_breaker_state{cluster="reviews"} 2.0\n'
        'gateway_breaker_state{cluster="legacy"} 0.0\n'
        'gateway_shadow_total{route="reviews.list",result="dropped"} 6.0\n'
    )
    assert parse_gateway(scrape) == {
        "limit": 38.0,
        "in_flight": 12.0,
        "queued": 3.0,
        "shed_total": 42.0,
        "fallbacks_total": 7.0,
        "circuit_open_total": 5.0,
        "legacy_errors_total": 0.0,
        "candidate_errors_total": 4.0,
        "candidate_breaker": 2.0,
        "shadow_dropped_total": 6.0,
    }
    assert "limit" not in parse_gateway("gateway_requests_in_flight 3.0\n")  # the limiter is off
    line = parse_legacy_line("b-0000042 200 15234", 3.5)
    assert line is not None and (line.request_id, line.status, line.ms) == ("b-0000042", 200, 15.234)
    assert parse_legacy_line("garbage", 1.0) is None


def test_the_spike_replay_tells_what_legacy_kept_doing_after_the_move():
    from bench._replay_probe import LegacyLine
    from bench._replay_report import after_event, legacy_work

    results = [
        _outcome(0.5, 2000.0, 0, code="client_timeout", request_id="r1"),  # gave up at 2.5 s
        _outcome(1.0, 9.0, 200, served_by="reviews", request_id="r2"),  # answered by the service
        _outcome(1.2, 300.0, 200, served_by="legacy", request_id="r3"),
        _outcome(0.9, 2000.0, 0, code="client_timeout", request_id="r4"),
    ]
    legacy = [
        LegacyLine(t=3.0, request_id="r1", status=200, ms=40.0),  # executed after its client left
        LegacyLine(t=1.5, request_id="r2", status=200, ms=10.0),  # a shadow copy
        LegacyLine(t=1.5, request_id="r3", status=200, ms=20.0),
        LegacyLine(t=2.0, request_id="r4", status=503, ms=1.0),  # refused: past its deadline
        LegacyLine(t=2.0, request_id="-", status=304, ms=1.0),  # the gateway's JWKS poll: not ours
    ]
    work = legacy_work(results, legacy)
    assert work == {
        "finished": 4,
        "full_work": 3,
        "deadline_503": 1,
        "busy_s": 0.07,
        "shadow_copies": 1,
        "for_clients_gone": 1,
    }
    probe = [
        {"t": 0.9, "shed_total": 10.0, "legacy_unread": 7, "cpu_legacy": 0.9},
        {"t": 1.4, "shed_total": 20.0, "legacy_unread": 3, "cpu_legacy": 0.5},
        {"t": 1.9, "shed_total": 25.0, "legacy_unread": 1, "cpu_legacy": 0.3},
    ]
    after = after_event(results, probe, legacy, at=1.0, seconds=2)
    first = after["per_second"][0]
    assert (first["shed_per_s"], first["legacy_unread_max"], first["cpu_legacy"]) == (15.0, 3, 0.4)
    assert (first["served_legacy"], first["served_candidate"], first["legacy_finished"]) == (1, 1, 3)
    assert after["legacy_finished_after"] == 4 and after["legacy_client_already_gone"] == 1
    assert after["legacy_sent_before_event"] == 2 and after["legacy_last_finish_s"] == 2.0
