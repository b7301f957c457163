"""Each fault in turn under a steady load through the gateway (tests/reliability/harness.py), held to
its stated bound; ``make reliability-report`` prints the same figures as a table."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.reliability.harness import SCENARIOS, Result, Scenario, Stack, run, stack

# scenario → (highest error rate while the fault lasts, longest recovery in seconds). Errors are 5xx
# and network errors; a killed monolith fails what only it serves (its reads and the orders).
BOUNDS = {
    "candidate killed": (0.05, 10.0),  # reads fall back to legacy; the breaker lets it back in 5 s
    "candidate hung": (0.05, 10.0),  # reads fall back to legacy after the 5 s read timeout
    "legacy killed": (0.75, 10.0),  # the candidate's reads go on; recovery includes gunicorn's boot
    "Redis cut": (0.0, 1.0),  # the last overrides stay in force
    "Redis blackholed": (0.0, 1.0),
    "JWKS down": (0.0, 1.0),  # the last keys stay, verified tokens stay cached
}


@pytest.fixture(scope="module")
def faults_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with stack(tmp_path_factory.mktemp("reliability")) as running:
        yield running


def test_every_scenario_has_a_bound() -> None:
    assert {scenario.name for scenario in SCENARIOS} == set(BOUNDS)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name.replace(" ", "-") for s in SCENARIOS])
def test_the_fault_stays_within_its_bound(faults_stack: Stack, scenario: Scenario) -> None:
    result: Result = run(faults_stack, scenario)
    print(result, f"error rate {result.error_rate:.1%}")
    max_error_rate, max_recovery = BOUNDS[scenario.name]
    assert result.requests > 20, result  # the load went on while the fault lasted
    assert result.error_rate <= max_error_rate, result
    assert result.recovery_seconds <= max_recovery, result
    assert result.after_errors == 0, result  # recovered means recovered
    # The write check: every order answered 201 is in the database, no purchase written twice.
    assert result.orders_201 > 0, result
    assert (result.orders_lost, result.orders_duplicated) == (0, 0), result
