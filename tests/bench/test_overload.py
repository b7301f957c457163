"""The overload benchmark's arithmetic: phases split into timeouts, sheds and admitted requests, the
three bounds of the issue, and a table of every run (no load is run here)."""

from __future__ import annotations

from bench._replay_report import Outcome
from bench.overload import _phase, markdown, verdict


def _outcomes() -> list[Outcome]:
    admitted = [Outcome(1.0 + i / 100, 10.0 + i % 10, 200, "list", request_id=f"on-{i}") for i in range(90)]
    shed = [Outcome(1.5, 4.0, 503, "list", code="overloaded", retry_after="1") for _ in range(8)]
    bare_shed = [Outcome(2.0, 5.0, 503, "list", code="overloaded")]
    timeout = [Outcome(2.1, 2000.0, 0, "home", code="client_timeout")]
    return admitted + shed + bare_shed + timeout


def test_a_phase_counts_timeouts_sheds_and_admitted_requests_apart():
    phase = _phase(_outcomes(), 0, 10, {f"on-{i}": 3.0 for i in range(90)})
    assert phase["requests"] == 100
    assert phase["admitted"] == 90
    assert phase["timeout_rate"] == 0.01
    assert phase["shed_rate"] == 0.09
    assert phase["shed_without_retry_after"] == 1
    assert phase["p99_admitted_ms"] == 19.0
    assert phase["legacy_p99_admitted_ms"] == 3.0


def test_a_phase_only_counts_requests_sent_inside_it():
    assert _phase(_outcomes(), 1.95, 10, {})["requests"] == 2  # the bare shed and the timeout


def _run(timeout_rate: float, p99_shed: float, bare: int, admitted_p99: float) -> dict:
    steady = {
        "timeout_rate": timeout_rate,
        "shed_rate": 0.6,
        "p99_shed_ms": p99_shed,
        "shed_without_retry_after": bare,
        "p99_admitted_ms": admitted_p99,
        "legacy_p99_admitted_ms": 8.0,
    }
    phase = {"after_warmup": steady, "offered_rps": 900.0, "finished_rps": 300.0}
    return {
        "unloaded": {"p99_ms": 10.0},
        "legacy_unloaded": {"p99_ms": 5.0},
        "capacity_rps": 300.0,
        "phases": {"off": phase, "on": phase},
    }


def test_each_bound_of_the_issue_can_fail_on_its_own():
    assert all(verdict(_run(0.0, 20.0, 0, 20.0)).values())
    assert verdict(_run(0.011, 20.0, 0, 20.0)) == {
        "timeouts_below_1_percent": False,
        "shed_within_100_ms_with_retry_after": True,
        "admitted_p99_within_2x_unloaded": True,
    }
    assert not verdict(_run(0.0, 120.0, 0, 20.0))["shed_within_100_ms_with_retry_after"]
    assert not verdict(_run(0.0, 20.0, 1, 20.0))["shed_within_100_ms_with_retry_after"]
    assert not verdict(_run(0.0, 20.0, 0, 20.1))["admitted_p99_within_2x_unloaded"]


def test_the_table_has_a_row_per_run_and_phase_with_the_ratios():
    table = markdown({"runs": [_run(0.0, 20.0, 0, 30.0)]}).splitlines()
    assert len(table) == 4
    assert table[2].startswith(
        "| 1 | off | 300 | 900 | 0.00 % | 60.0 % (20, 0) | 30 (3.0x) | 8 (1.6x) | 300 |"
    )
