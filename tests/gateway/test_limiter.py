"""The adaptive concurrency limit: AIMD on latency, a short bounded queue, then shedding."""

from __future__ import annotations

import asyncio

import pytest

from gateway.limiter import AdaptiveLimit, LimitConfigError, LimitPolicy
from gateway.routes import RouteTableError, build_table


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _window(limit: AdaptiveLimit, clock: Clock, latency: float, samples: int = 5) -> None:
    """One window of ``samples`` requests answered in ``latency`` seconds, all at the limit."""
    clock.now += limit.policy.window_seconds * 1.5
    for _ in range(samples):
        while limit.try_acquire():
            pass  # fill up to the limit: the limit is reached in this window
        limit.release(latency)


def test_the_limit_grows_while_latency_stays_near_the_baseline():
    clock = Clock()
    limit = AdaptiveLimit(LimitPolicy(initial_limit=10, max_limit=14), clock=clock)
    for _ in range(10):
        _window(limit, clock, 0.010)
    assert limit.limit == 14, "one more per window, up to the maximum"
    assert limit.baseline == pytest.approx(0.010)


def test_the_limit_shrinks_when_latency_climbs_and_never_below_the_minimum():
    clock = Clock()
    limit = AdaptiveLimit(LimitPolicy(initial_limit=20, min_limit=3), clock=clock)
    _window(limit, clock, 0.010)
    before = limit.limit
    _window(limit, clock, 0.050)  # 5x the baseline: the backend queues
    assert limit.limit < before
    for _ in range(50):
        _window(limit, clock, 0.050)
    assert limit.limit == 3


def test_a_timeout_or_5xx_shrinks_the_limit():
    clock = Clock()
    limit = AdaptiveLimit(LimitPolicy(initial_limit=10), clock=clock)
    _window(limit, clock, 0.010)
    clock.now += 1
    assert limit.try_acquire()
    limit.release(2.0, dropped=True)
    assert limit.limit < 11


def test_beyond_the_limit_a_request_waits_then_is_shed():
    async def scenario() -> None:
        limit = AdaptiveLimit(LimitPolicy(initial_limit=2, min_limit=1, max_queue=1, max_wait_seconds=0.05))
        assert limit.try_acquire() and limit.try_acquire()
        waiting = asyncio.create_task(limit.acquire())
        await asyncio.sleep(0)
        assert limit.queued == 1
        assert await limit.acquire() is False, "the queue is full: shed at once"
        limit.release(0.01)  # a slot frees: the waiter gets it
        assert await waiting is True
        assert limit.in_flight == 2
        assert await limit.acquire() is False, "waited max_wait_seconds, then shed"
        assert limit.shed == 2 and limit.queued == 0

    asyncio.run(scenario())


def test_a_cancelled_waiter_leaves_the_queue():
    async def scenario() -> None:
        limit = AdaptiveLimit(LimitPolicy(initial_limit=1, min_limit=1, max_wait_seconds=1.0))
        assert limit.try_acquire()
        waiting = asyncio.create_task(limit.acquire())
        await asyncio.sleep(0)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert limit.queued == 0
        limit.release(0.01)
        assert limit.in_flight == 0

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"min_limit": 50, "max_limit": 10}, "min_limit"),
        ({"window_seconds": -1}, "window_seconds"),
        ({"tolerance": 0.5}, "tolerance"),
        ({"backoff": 1.5}, "backoff"),
        ({"max_wait_seconds": float("nan")}, "max_wait_seconds"),
        ({"max_queue": -3}, "max_queue"),
        ({"min_limit": 2.5}, "whole number"),
        ({"typo_limit": 3}, "unknown"),
        ({"enabled": "yes"}, "enabled"),
    ],
)
def test_bad_limiter_settings_are_refused_with_a_clear_message(settings: dict, message: str):
    document = {
        "default_cluster": "legacy",
        "clusters": {"legacy": {"url": "http://127.0.0.1:9", "limiter": settings}},
        "routes": [],
    }
    with pytest.raises(RouteTableError, match=message) as refused:
        build_table(document, {})
    assert "cluster legacy" in str(refused.value)


def test_the_shipped_table_protects_legacy_and_only_legacy():
    from gateway.routes import load_table
    from gateway.settings import DEFAULT_ROUTES_FILE

    table = load_table(DEFAULT_ROUTES_FILE, {})
    assert table.clusters["legacy"].limit is not None
    assert table.clusters["reviews"].limit is None


def test_a_policy_refuses_bad_values_directly():
    with pytest.raises(LimitConfigError):
        LimitPolicy(initial_limit=500, max_limit=200)


def test_slow_windows_at_low_concurrency_do_not_shrink_the_limit():
    """A few clients hitting slow endpoints are not a queue: the limit must not collapse under them."""
    clock = Clock()
    limit = AdaptiveLimit(LimitPolicy(initial_limit=20), clock=clock)
    for latency in (0.005, 0.030, 0.004, 0.040, 0.030) * 4:  # one request at a time, mixed endpoints
        clock.now += limit.policy.window_seconds * 1.5
        for _ in range(limit.policy.min_samples):
            assert limit.try_acquire()
            limit.release(latency)
    assert limit.limit == 20


def test_when_the_limit_grows_every_free_slot_goes_to_a_waiter():
    """The queue must not hold the in-flight count down while the limit grows (seen in the replay)."""

    async def scenario() -> None:
        limit = AdaptiveLimit(LimitPolicy(initial_limit=4, min_limit=1, max_wait_seconds=1.0))
        for _ in range(4):
            assert limit.try_acquire()
        waiting = [asyncio.create_task(limit.acquire()) for _ in range(6)]
        await asyncio.sleep(0)
        assert limit.queued == 6
        limit.limit = 10  # the controller raised it
        limit.release(0.01)
        assert limit.in_flight == 9 and limit.queued == 0, "3 left + 6 admitted"
        assert all(await asyncio.gather(*waiting))

    asyncio.run(scenario())


def test_a_long_overload_does_not_drag_the_baseline_up_to_the_overloaded_latency():
    clock = Clock()
    limit = AdaptiveLimit(LimitPolicy(initial_limit=10, min_limit=2), clock=clock)
    _window(limit, clock, 0.010)
    for _ in range(600):  # a minute of 0.1 s windows, every one pressed and slow
        _window(limit, clock, 0.050)
    assert limit.baseline == pytest.approx(0.010)
    assert limit.limit == 2, "still protecting after a minute"
