"""Fail safe: a dead candidate, the fallback rule, the breaker and the bulkhead."""

from __future__ import annotations

import sqlite3

import httpx
import pytest

from gateway.resilience import CLOSED, HALF_OPEN, OPEN, BreakerPolicy, Bulkhead, CircuitBreaker, RetryBudget
from tests.gateway.conftest import ADMIN_TOKEN, Stack


def _metric(stack_url: str, name: str) -> float:
    total = 0.0
    for line in httpx.get(f"{stack_url}/_gateway/metrics").text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_gets_fall_back_to_legacy_when_the_candidate_is_down(stack: Stack):
    before = _metric(stack.dead_candidate_gateway, "gateway_fallbacks_total")
    for _ in range(3):
        response = httpx.get(f"{stack.dead_candidate_gateway}/api/v1/reviews/items/1/summary")
        assert response.status_code == 200
        assert response.headers["x-served-by"] == "legacy"
    assert _metric(stack.dead_candidate_gateway, "gateway_fallbacks_total") >= before + 3


def test_a_post_that_failed_on_the_candidate_is_502_and_written_nowhere(stack: Stack):
    token = stack.token("demo5")
    with sqlite3.connect(stack.database) as db:
        reviewed = {row[0] for row in db.execute("SELECT item_id FROM reviews_review WHERE user_id = 5")}
        item = min(set(range(1, 41)) - reviewed)
        before = db.execute("SELECT COUNT(*) FROM reviews_review").fetchone()[0]
    response = httpx.post(
        f"{stack.dead_candidate_gateway}/api/v1/reviews",
        json={"item_id": item, "rating": 5, "body": "must not be written"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "bad_gateway"
    assert response.headers["x-served-by"] == "gateway"
    with sqlite3.connect(stack.database) as db:
        assert db.execute("SELECT COUNT(*) FROM reviews_review").fetchone()[0] == before
        assert (
            db.execute("SELECT COUNT(*) FROM reviews_review WHERE body = 'must not be written'").fetchone()[0]
            == 0
        )


def test_the_dead_candidates_breaker_opens(stack: Stack):
    for _ in range(6):
        httpx.get(f"{stack.dead_candidate_gateway}/api/v1/reviews/items/1/summary")
    routes = httpx.get(
        f"{stack.dead_candidate_gateway}/_gateway/admin/routes",
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    ).json()["routes"]
    assert {row["breaker"] for row in routes if row["candidate"] == "reviews"} == {OPEN}
    assert (
        'gateway_breaker_state{cluster="reviews"} 2.0'
        in httpx.get(f"{stack.dead_candidate_gateway}/_gateway/metrics").text
    )


def test_a_dead_candidate_keeps_the_gateway_ready_but_degraded(stack: Stack):
    """Failing readiness for a candidate would take every gateway pod out of service."""
    ready = httpx.get(f"{stack.dead_candidate_gateway}/_gateway/ready")
    assert ready.status_code == 200, ready.text
    assert ready.json()["status"] == "degraded"
    assert ready.json()["checks"]["reviews"] is False and ready.json()["checks"]["legacy"] is True


def test_with_the_breaker_open_a_post_is_routed_to_legacy_and_written_once(stack: Stack):
    """An open breaker is a routing decision (nothing reached the candidate), not a replay."""
    token = stack.token("demo4")
    with sqlite3.connect(stack.database) as db:
        reviewed = {row[0] for row in db.execute("SELECT item_id FROM reviews_review WHERE user_id = 4")}
        item = min(set(range(1, 41)) - reviewed)
    response = httpx.post(
        f"{stack.dead_candidate_gateway}/api/v1/reviews",
        json={"item_id": item, "rating": 4, "body": "routed around the open breaker"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 201, response.text
    assert response.headers["x-served-by"] == "legacy"
    with sqlite3.connect(stack.database) as db:
        query = "SELECT COUNT(*) FROM reviews_review WHERE body = 'routed around the open breaker'"
        assert db.execute(query).fetchone()[0] == 1


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr("gateway.resilience.time.monotonic", fake)
    return fake


def test_breaker_opens_on_consecutive_connect_failures_then_half_opens_and_closes(clock: Clock):
    breaker = CircuitBreaker(BreakerPolicy(connect_failures=3, open_seconds=5))
    for _ in range(3):
        assert breaker.allow()
        breaker.record(False, connect_failure=True)
    assert breaker.state == OPEN
    assert breaker.is_open()
    assert not breaker.allow(), "open: shed at once"
    clock.now += 5
    assert not breaker.is_open(), "time for a probe"
    assert breaker.allow(), "half-open: one probe"
    assert breaker.state == HALF_OPEN
    assert not breaker.allow(), "only one probe at a time"
    breaker.record(True)
    assert breaker.state == CLOSED
    assert breaker.allow()


def test_a_failed_probe_opens_the_breaker_again(clock: Clock):
    breaker = CircuitBreaker(BreakerPolicy(connect_failures=1, open_seconds=5))
    breaker.allow()
    breaker.record(False, connect_failure=True)
    clock.now += 5
    assert breaker.allow()
    breaker.record(False)
    assert breaker.state == OPEN
    assert not breaker.allow()


def test_an_abandoned_probe_lets_the_next_request_probe(clock: Clock):
    """A probe refused by the bulkhead or cancelled must not leave the breaker half-open for ever."""
    breaker = CircuitBreaker(BreakerPolicy(connect_failures=1, open_seconds=5))
    breaker.record(False, connect_failure=True)
    clock.now += 5
    assert breaker.allow()
    breaker.abandon()
    assert breaker.allow(), "the slot is free again"


def test_a_handful_of_5xx_from_one_client_does_not_open_the_breaker(clock: Clock):
    """Five hostile requests answered 500 are failures, but not volume (they used to open it)."""
    breaker = CircuitBreaker(BreakerPolicy(min_calls=20, failure_rate=0.5))
    for _ in range(19):
        breaker.record(False)
    assert breaker.state == CLOSED


def test_breaker_opens_on_failure_rate_over_the_minimum_volume(clock: Clock):
    breaker = CircuitBreaker(BreakerPolicy(failure_rate=0.5, min_calls=10))
    for outcome in [True, False] * 4 + [False, False]:
        breaker.record(outcome)
    assert breaker.state == OPEN


def test_failures_leave_the_window(clock: Clock):
    breaker = CircuitBreaker(BreakerPolicy(failure_rate=0.5, min_calls=10, window_seconds=10))
    for _ in range(9):
        breaker.record(False)
    clock.now += 10
    breaker.record(False)
    assert breaker.state == CLOSED, "the nine old failures are out of the window"


def test_occasional_failures_keep_the_breaker_closed(clock: Clock):
    breaker = CircuitBreaker(BreakerPolicy())
    for _ in range(50):
        breaker.record(False)
        for _ in range(3):
            breaker.record(True)
    assert breaker.state == CLOSED


def test_every_state_change_is_reported(clock: Clock):
    seen: list[str] = []
    breaker = CircuitBreaker(BreakerPolicy(connect_failures=1, open_seconds=5), on_change=seen.append)
    breaker.record(False, connect_failure=True)
    clock.now += 5
    breaker.allow()
    breaker.record(True)
    assert seen == [OPEN, HALF_OPEN, CLOSED]


def test_bulkhead_counts_in_flight():
    bulkhead = Bulkhead(2)
    assert bulkhead.try_enter() and bulkhead.try_enter()
    assert not bulkhead.try_enter()
    bulkhead.leave()
    assert bulkhead.try_enter()


def test_retry_budget_keeps_retries_under_a_fifth_of_traffic():
    budget = RetryBudget(ratio=0.2, burst=10)
    spent = 0
    for _ in range(1000):
        budget.earn()
        if budget.spend():  # every request fails and wants a fallback
            spent += 1
    assert spent <= 0.2 * 1000 + 10
    assert spent >= 0.2 * 1000 - 1
