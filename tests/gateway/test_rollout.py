"""Rollouts in one process: the gates as pure functions, and the loop on a real override store (file,
and Redis database 15) with a fake clock: steps to done, rolls back on parity (naming the field) and
on errors, steps down on latency, pauses when a person acts, sums two workers' figures, and carries
on after a restart. The same with real gateway processes: tests/gateway/test_rollout_stack.py."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from flags import Flags
from flags.model import Override
from flags.overrides import (
    AUDIT_STREAM,
    FIGURES_PREFIX,
    HASH_KEY,
    LEASE_PREFIX,
    ROLLOUTS_KEY,
    FileOverrideStore,
    OverrideStore,
    OverrideStoreError,
    RedisOverrideStore,
    change_rollout,
    write_rollout,
)
from flags.rollout import PERSON_CHANGES, Plan, Rollout, start_routes
from gateway import live as live_module
from gateway.accesslog import AccessLog
from gateway.decider import run_every
from gateway.live import LiveStats
from gateway.metrics import Metrics
from gateway.resilience import RetryBudget
from gateway.rollout import LEASE_NAME, Evidence, Rollouts, Side, collect, decide, judge, topic
from gateway.routes import load_table
from gateway.runtime import Routing, Runtime, build_upstreams
from gateway.settings import DEFAULT_ROUTES_FILE, load_settings
from gateway.shadow import Shadow
from tests.support.redis_db import TEST_REDIS_URL, clean_redis

URLS = {name: "http://127.0.0.1:9" for name in ("legacy", "reviews", "recommendations")}
ROUTE = "reviews.summary"
PLAN = Plan(steps=(1, 50, 100), every_seconds=1, min_samples=20)

# ---------------------------------------------------------------- the gates (pure)


def rollout(**changes: Any) -> Rollout:
    [(started, _)] = start_routes([ROUTE], PLAN, actor="alice", reason="move it", now=1_000.0, existing={})
    return dataclasses.replace(started, **changes)


def side(requests: int, errors: int = 0, seconds: float = 0.010) -> Side:
    from gateway.live import BOUNDS

    index = next(i for i, bound in enumerate(BOUNDS) if bound >= seconds)
    return Side(requests=requests, errors=errors, histogram={index: requests} if requests else {})


def evidence(**changes: Any) -> Evidence:
    values: dict[str, Any] = {
        "legacy": side(200),
        "candidate": side(3),
        "match": 40,
        "mismatch": 0,
        "to_candidate": 40,
        "candidate_failed": 0,
        "seconds": 2,  # whole seconds counted: more than the 1 s window
    }
    return Evidence(**{**values, **changes})


def test_a_step_advances_once_every_gate_passed_for_the_whole_window():
    early = judge(rollout(), evidence(seconds=0), now=1_000.5)
    assert early.action == "wait" and "0 of 1 s" in early.reason
    too_few = judge(rollout(), evidence(match=12, to_candidate=12), now=1_002)
    assert too_few.action == "wait" and "12 of 20 compared" in too_few.reason
    passed = judge(rollout(), evidence(), now=1_002)
    assert passed.action == "advance"
    assert passed.gates["gates"] == {"errors": "pass", "parity": "pass", "latency": "not judged"}
    changed, override = decide(rollout(), evidence(), now=1_002)
    assert (changed.state, changed.step, changed.percent) == ("running", 2, 50)
    assert override is not None and (override.backend, override.percent, override.actor) == (
        "candidate",
        50,
        "rollout",
    )
    assert changed.applied == override and changed.window == {}
    assert changed.history[-1]["action"] == "advance" and changed.history[-1]["gates"]["compared"] == 40


def test_the_last_step_passing_is_done_and_keeps_the_route_on_the_candidate():
    last = rollout(step=3, percent=100)
    changed, override = decide(last, evidence(legacy=side(0), candidate=side(300), to_candidate=0), now=1_002)
    assert (changed.state, changed.percent, override) == ("done", 100, None)
    assert changed.reason.startswith("done at 100 %")


def test_a_mismatch_rolls_back_at_once_naming_the_first_differing_field():
    failing = evidence(match=38, mismatch=2, first_difference="body:/rating_average", first_difference_at=999)
    changed, override = decide(rollout(), failing, now=1_000.5)  # mid-window: no need to wait for its end
    assert (changed.state, changed.percent) == ("rolled_back", 0)
    assert override is not None and override.backend == "legacy" and override.percent is None
    assert "parity 95.00 % of 40 compared is below 99.9 %" in changed.reason
    assert "first differing field body:/rating_average" in changed.reason
    assert changed.history[-1]["gates"]["first_difference"] == "body:/rating_average"


def test_parity_is_judged_only_from_min_samples_on():
    verdict = judge(rollout(), evidence(match=9, mismatch=1, to_candidate=10), now=1_000.5)
    assert verdict.action == "wait" and verdict.gates["gates"]["parity"] == "waiting"


def test_candidate_errors_roll_back_at_once_relative_to_legacy_with_a_floor():
    # Legacy fails 1 %: the candidate may fail up to 1 % x 1.0 + 0.1 %.
    fine = evidence(
        legacy=side(1_000, errors=10), candidate=side(100, errors=1), to_candidate=900, candidate_failed=9
    )
    assert judge(rollout(), fine, now=1_002).action == "advance"
    bad = evidence(
        legacy=side(1_000, errors=10), candidate=side(100, errors=5), to_candidate=100, candidate_failed=20
    )
    verdict = judge(rollout(), bad, now=1_000.5)
    assert verdict.action == "rollback" and verdict.reason.startswith("errors: candidate failed 12.50 %")
    # 0 against a handful in ten thousand is within the floor.
    tiny = evidence(
        legacy=side(10_000), candidate=side(0), to_candidate=10_000, candidate_failed=5, match=10_000
    )
    assert judge(rollout(), tiny, now=1_002).action == "advance"


def test_legacy_errors_on_too_few_requests_raise_no_allowance_only_the_floor_applies():
    # 5 of 10 legacy requests failed: 50 %, on a sample too small to say anything.
    shaky = evidence(legacy=side(10, errors=5), candidate=side(200, errors=40), to_candidate=0)
    verdict = judge(rollout(), shaky, now=1_000.5)
    assert verdict.action == "rollback" and verdict.gates["allowed_error_rate_percent"] == 0.1
    assert verdict.gates["legacy"]["from"] == "too few: floor only"


def test_a_slow_candidate_steps_back_the_way_it_came_then_to_zero():
    slow = evidence(legacy=side(600, seconds=0.010), candidate=side(600, seconds=0.100))
    at_50 = rollout(step=2, percent=50)
    verdict = judge(at_50, slow, now=1_002)
    assert verdict.action == "step_down" and verdict.reason.startswith("latency: candidate p99")
    down, override = decide(at_50, slow, now=1_002)
    assert (down.state, down.step, down.percent) == ("rolling_back", 1, 1)
    assert override is not None and override.percent == 1
    # It waits a down step (min(every, 5 s)) at 1 %, then goes to 0 %.
    held, nothing = decide(down, evidence(), now=1_002.5)
    assert (held.percent, nothing) == (1, None)
    gone, override = decide(down, evidence(), now=1_003.1)
    assert (gone.state, gone.percent) == ("rolled_back", 0) and override is not None
    assert "latency" in gone.reason


def test_a_candidate_slightly_slower_within_the_ratio_and_bucket_passes():
    close = evidence(legacy=side(600, seconds=0.020), candidate=side(600, seconds=0.022))
    assert judge(rollout(step=2, percent=50), close, now=1_002).gates["gates"]["latency"] == "pass"


def test_latency_is_judged_only_in_the_same_window_and_on_enough_requests():
    few = evidence(legacy=side(200, seconds=0.010), candidate=side(200, seconds=0.100))
    assert judge(rollout(step=2, percent=50), few, now=1_002).gates["gates"]["latency"] == "not judged"
    # At 100 % legacy serves nothing: an older window's p99 is never the yardstick.
    at_100 = rollout(step=3, percent=100, baseline=side(5_000, seconds=0.005).to_json())
    alone = evidence(legacy=side(0), candidate=side(5_000, seconds=0.100), to_candidate=0)
    verdict = judge(at_100, alone, now=1_002)
    assert verdict.gates["gates"]["latency"] == "not judged" and verdict.action == "advance"


def test_at_100_percent_legacy_figures_come_from_the_last_window_it_served_enough():
    baseline = side(500, errors=0).to_json()
    at_100 = rollout(step=3, percent=100, baseline=baseline)
    failing = evidence(legacy=side(0), candidate=side(300, errors=30), to_candidate=0)
    verdict = judge(at_100, failing, now=1_000.5)
    assert verdict.gates["legacy"]["from"] == "baseline" and verdict.action == "rollback"


def test_window_figures_sum_every_workers_document_and_count_each_second_once():
    def document(second: int, requests: int) -> dict[str, Any]:
        return {
            "from": second - 30,
            "legacy": [[second, requests, 0, {"10": requests}], [second + 1, requests, 0, {"10": requests}]],
            "candidate": [[second, 1, 1, {"10": 1}]],
            "shadow": [[second, 5, 1, 0, 6, 0, "body:/x"], [second + 1, 4, 0, 0, 4, 0]],
        }

    documents = {"worker-a": document(100, 10), "worker-b": document(100, 20)}
    delta, rps = collect(documents, after=99, until=100)  # second 101 is not settled yet
    assert (delta.legacy.requests, delta.candidate.requests, delta.candidate.errors) == (30, 2, 2)
    assert (delta.match, delta.mismatch, delta.to_candidate) == (10, 2, 12)
    assert delta.first_difference == "body:/x" and delta.workers == {"worker-a", "worker-b"}
    later, _ = collect(documents, after=100, until=101)
    assert later.legacy.requests == 30 and later.match == 8, "second 100 is not counted twice"
    assert rps == 32.0
    assert (delta.seconds, later.seconds) == (1, 1)
    bad = {
        **documents,
        "worker-c": {"from": 70, "legacy": "not rows"},
        "worker-d": {"legacy": []},
        "worker-e": {"from": 70, "legacy": [[100, 1, 0, ["not", "a", "histogram"]]]},  # AttributeError
        "worker-f": ["not", "a", "document"],
    }
    assert collect(bad, after=99, until=100)[0].legacy.requests == 30, "a bad document is skipped alone"


def test_only_seconds_some_worker_covers_count_as_window_time():
    # The decider could not read for 100 s (a store outage); the workers were redeployed at 195.
    fresh = {"from": 195, "legacy": [[196, 10, 0, {"10": 10}]], "candidate": [], "shadow": []}
    delta, _ = collect({"worker-new": fresh}, after=100, until=200)
    assert delta.seconds == 6 and delta.legacy.requests == 10  # 195 to 200
    # Workers keep a minute: an older gap is not window time either.
    old = {**fresh, "from": 0}
    assert collect({"worker-old": old}, after=100, until=200)[0].seconds == 60
    assert collect({}, after=100, until=200)[0].seconds == 0, "no worker, no evidence, no time"


def test_a_window_is_not_passed_on_the_seconds_of_an_outage(tmp_path, clock):
    store = file_store(tmp_path)
    rt = runtime(tmp_path, store)
    start(store, Plan(steps=(1, 100), every_seconds=30, min_samples=20))
    pilot = Rollouts(rt, owner="me", clock=clock)

    async def scenario() -> None:
        for _ in range(5):
            clock.now += 1
            traffic(rt)
            await pilot.tick()
        clock.now += 120  # the store was out (and the worker restarted) for two minutes
        rt.live = LiveStats()
        for _ in range(5):
            clock.now += 1
            traffic(rt)
            await pilot.tick()

    asyncio.run(scenario())
    after = the_rollout(store)
    assert (after.step, after.state) == (1, "running"), after.reason
    assert after.gates["window_seconds"] < 10 and "of 30 s" in after.reason


# ---------------------------------------------------------------- the loop on a real store


class Clock:
    def __init__(self) -> None:
        self.now = float(int(time.time()))

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(live_module, "time", SimpleNamespace(time=fake))
    return fake


def runtime(tmp_path: Path, store: OverrideStore) -> Runtime:
    settings = load_settings({"VAR_DIR": str(tmp_path), "GATEWAY_ACCESS_LOG": "false"})
    table = load_table(DEFAULT_ROUTES_FILE, URLS)
    metrics = Metrics.create()
    return Runtime(
        settings=settings,
        routing=Routing(table=table, upstreams=build_upstreams(table, metrics)),
        flags=Flags(overrides=store, providers=[]),
        verifier=None,  # type: ignore[arg-type]  # nothing is authenticated here
        metrics=metrics,
        retry_budget=RetryBudget(),
        shadow=Shadow(),
        live=LiveStats(),
        access_log=AccessLog(enabled=False),
    )


def traffic(
    rt: Runtime,
    *,
    legacy: int = 15,
    candidate: int = 2,
    matches: int = 15,
    mismatch_every: int = 0,
    candidate_status: int = 200,
    candidate_seconds: float = 0.004,
) -> None:
    """One second of the route: what each backend served and the shadows, through the app's callback."""
    shadow = Shadow(on_result=rt.record_shadow)
    for _ in range(legacy):
        rt.live.record(ROUTE, "legacy", 200, 0.010)
    for _ in range(candidate):
        rt.live.record(ROUTE, "candidate", candidate_status, candidate_seconds)
    for n in range(matches):
        if mismatch_every and n % mismatch_every == 0:
            shadow._count(rt.metrics, ROUTE, "mismatch", "reviews", 200, "body:/rating_average")
        else:
            shadow._count(rt.metrics, ROUTE, "match", "reviews", candidate_status)


def start(store: OverrideStore, plan: Plan = PLAN) -> None:
    [(first, override)] = start_routes(
        [ROUTE], plan, actor="alice", reason="move it", now=time.time(), existing={}
    )
    write_rollout(first, override, store)


async def run_until(
    pilots: list[Rollouts], clock: Clock, runtimes: list[Runtime], done: Any, **kwargs: Any
) -> None:
    for _ in range(40):  # a bound: each round is one fake second
        clock.now += 1
        for rt in runtimes:
            traffic(rt, **kwargs)
        for pilot in pilots:
            await pilot.tick()
        if done():
            return
    raise AssertionError("never reached the state")


def file_store(tmp_path: Path) -> FileOverrideStore:
    return FileOverrideStore(tmp_path / "overrides.json", tmp_path / "audit.jsonl")


def the_rollout(store: OverrideStore) -> Rollout:
    return store.rollouts()[ROUTE]


def test_a_healthy_candidate_goes_step_by_step_to_done(tmp_path, clock):
    store = file_store(tmp_path)
    rt = runtime(tmp_path, store)
    start(store)
    pilot = Rollouts(rt, owner="me", clock=clock)
    asyncio.run(run_until([pilot], clock, [rt], lambda: the_rollout(store).state == "done"))
    final = the_rollout(store)
    assert [event["action"] for event in final.history] == ["start", "advance", "advance", "done"]
    assert [event["percent"] for event in final.history] == [1, 50, 100, 100]
    for advance in final.history[1:]:  # the figures that justified each step
        assert advance["gates"]["compared"] >= 20 and advance["gates"]["parity_percent"] == 100.0
    assert store.snapshot()[ROUTE].percent == 100 and store.snapshot()[ROUTE].actor == "rollout"
    assert [entry.actor for entry in store.audit()] == ["rollout"] * 3
    # 2 x 20 samples a 1 s window of ~17 requests a second: everything is shadowed until done.
    assert rt.shadow_boost == {ROUTE: 1.0} and pilot.lease.leading


def test_while_it_runs_the_route_is_shadowed_enough_for_min_samples(tmp_path, clock):
    store = file_store(tmp_path)
    rt = runtime(tmp_path, store)
    start(store, Plan(steps=(1, 100), every_seconds=60, min_samples=200))
    pilot = Rollouts(rt, owner="me", clock=clock)

    async def scenario() -> None:
        for _ in range(6):
            clock.now += 1
            traffic(rt, legacy=100, candidate=1, matches=5)
            await pilot.tick()

    asyncio.run(scenario())
    # ~101 req/s x 60 s = 6,060 requests a window; 2 x 200 samples of them: 6.6 %.
    assert the_rollout(store).shadow_rate == pytest.approx(0.066, abs=0.01)
    assert rt.shadow_rate(rt.table.by_id(ROUTE)) == the_rollout(store).shadow_rate  # type: ignore[arg-type]


def test_a_candidate_that_changes_a_field_is_rolled_back_at_the_first_step(tmp_path, clock):
    store = file_store(tmp_path)
    rt = runtime(tmp_path, store)
    start(store)
    pilot = Rollouts(rt, owner="me", clock=clock)
    asyncio.run(
        run_until([pilot], clock, [rt], lambda: the_rollout(store).state == "rolled_back", mismatch_every=5)
    )
    final = the_rollout(store)
    assert [event["action"] for event in final.history] == ["start", "rollback"]
    assert "parity" in final.reason and "body:/rating_average" in final.reason
    assert (store.snapshot()[ROUTE].backend, final.percent) == ("legacy", 0)
    assert "body:/rating_average" in store.audit()[-1].reason, "the reason is in the audit trail"


def test_a_failing_candidate_is_rolled_back_on_the_error_gate(tmp_path, clock):
    store = file_store(tmp_path)
    rt = runtime(tmp_path, store)
    start(store)
    pilot = Rollouts(rt, owner="me", clock=clock)
    asyncio.run(
        run_until(
            [pilot], clock, [rt], lambda: the_rollout(store).state == "rolled_back", candidate_status=500
        )
    )
    final = the_rollout(store)
    assert final.reason.startswith("rolled back to 0 % at step 1/3 (1 %): errors: candidate failed 100.00 %")


def test_a_person_changing_the_route_wins_and_pauses_the_rollout(tmp_path, clock):
    store = file_store(tmp_path)
    rt = runtime(tmp_path, store)
    start(store, Plan(steps=(1, 100), every_seconds=3600, min_samples=20))
    pilot = Rollouts(rt, owner="me", clock=clock)
    bob = Override.create(route=ROUTE, backend="legacy", reason="not tonight", actor="bob")

    async def scenario() -> None:
        for _ in range(4):
            clock.now += 1
            traffic(rt)
            await pilot.tick()
        store.apply([(ROUTE, bob)], actor="bob", reason="not tonight")
        await pilot.tick()

    asyncio.run(scenario())
    paused = the_rollout(store)
    assert paused.state == "paused" and "bob set legacy (not tonight)" in paused.reason
    assert store.snapshot()[ROUTE] == bob, "the person's override stays"
    # Resumed, it takes the route back at its step, with a fresh window.
    [_, resume] = PERSON_CHANGES["resume"]
    resumed = change_rollout(store, ROUTE, lambda r: resume(r, "bob", "go on", time.time()))
    assert resumed.state == "running" and store.snapshot()[ROUTE].percent == 1


def test_an_override_changed_without_an_audit_line_pauses_the_rollout_not_stuck(tmp_path, clock):
    store = file_store(tmp_path)
    rt = runtime(tmp_path, store)
    start(store, Plan(steps=(1, 100), every_seconds=3600, min_samples=20))
    pilot = Rollouts(rt, owner="me", clock=clock)

    async def scenario() -> None:
        for _ in range(3):
            clock.now += 1
            traffic(rt)
            await pilot.tick()
        # A hand edit of the file (or a raw HSET, or a write cut short): no audit line.
        document = json.loads(store.path.read_text())
        document["overrides"][ROUTE]["percent"] = 7
        store.path.write_text(json.dumps(document))
        for _ in range(2):
            clock.now += 1
            traffic(rt)
            await pilot.tick()

    asyncio.run(scenario())
    paused = the_rollout(store)
    assert paused.state == "paused", paused.reason
    assert "rollout set candidate 7 % (" in paused.reason and "with no audit entry" in paused.reason
    assert store.stored()[ROUTE].percent == 7, "what is in force stays until a person resumes"


def test_a_queued_route_a_person_already_held_pauses_instead_of_being_overwritten(tmp_path, clock):
    store = file_store(tmp_path)
    rt = runtime(tmp_path, store)
    bob = Override.create(route="reviews.list", backend="legacy", reason="pinned", actor="bob", now=1.0)
    store.apply([("reviews.list", bob)], actor="bob", reason="pinned")  # long before the batch
    starts = start_routes(
        [ROUTE, "reviews.list"], PLAN, actor="alice", reason="all", now=time.time(), existing={}
    )
    for started, override in starts:
        write_rollout(started, override, store)
    [_, abort] = PERSON_CHANGES["abort"]
    change_rollout(store, ROUTE, lambda r: abort(r, "alice", "not this one", time.time()))
    asyncio.run(Rollouts(rt, owner="me", clock=clock).tick())
    queued = store.rollouts()["reviews.list"]
    assert queued.state == "paused" and "bob set legacy (pinned)" in queued.reason
    assert store.stored()["reviews.list"] == bob


def test_figures_of_two_workers_are_summed_and_one_decides(tmp_path, clock, redis_url):
    stores = [RedisOverrideStore(redis_url), RedisOverrideStore(redis_url)]
    runtimes = [runtime(tmp_path, store) for store in stores]
    pilots = [Rollouts(rt, owner=f"worker-{n}", clock=clock) for n, rt in enumerate(runtimes)]
    start(stores[0], Plan(steps=(1, 100), every_seconds=3600, min_samples=20))

    async def scenario() -> None:
        for _ in range(6):
            clock.now += 1
            for rt in runtimes:
                traffic(rt, legacy=10, candidate=1, matches=3)
            await asyncio.gather(*(pilot.tick() for pilot in pilots))

    try:
        asyncio.run(scenario())
    finally:
        for store in stores:
            store.stop()
    assert sum(pilot.lease.leading for pilot in pilots) == 1
    gates = the_rollout(stores[0]).gates
    counted = gates["window_seconds"]
    assert gates["workers"] == 2
    assert gates["legacy"]["requests"] == 2 * 10 * counted and gates["compared"] == 2 * 3 * counted


def test_a_new_decider_carries_on_from_the_stored_rollout(tmp_path, clock):
    store = file_store(tmp_path)
    rt = runtime(tmp_path, store)
    start(store)
    first = Rollouts(rt, owner="before-the-restart", clock=clock)
    asyncio.run(run_until([first], clock, [rt], lambda: the_rollout(store).step == 2))
    asyncio.run(first.lease.release(store))  # a clean shutdown
    after = runtime(tmp_path, file_store(tmp_path))  # a new process: nothing in memory
    second = Rollouts(after, owner="after-the-restart", clock=clock)
    asyncio.run(run_until([second], clock, [after], lambda: the_rollout(store).state == "done"))
    assert [event["action"] for event in the_rollout(store).history] == [
        "start",
        "advance",
        "advance",
        "done",
    ]


def test_a_batch_runs_its_routes_one_after_another(tmp_path, clock):
    store = file_store(tmp_path)
    rt = runtime(tmp_path, store)
    routes = [ROUTE, "reviews.list"]
    for started, override in start_routes(
        routes, PLAN, actor="alice", reason="all", now=time.time(), existing={}
    ):
        write_rollout(started, override, store)
    assert [store.rollouts()[route].state for route in routes] == ["running", "queued"]
    [_, abort] = PERSON_CHANGES["abort"]
    change_rollout(store, ROUTE, lambda r: abort(r, "alice", "not this one", time.time()))
    pilot = Rollouts(rt, owner="me", clock=clock)
    asyncio.run(pilot.tick())
    assert store.rollouts()["reviews.list"].state == "running"
    assert store.snapshot()["reviews.list"].percent == 1 and store.snapshot()[ROUTE].backend == "legacy"


def test_without_a_rollout_the_loop_holds_no_lease_and_shadows_nothing(tmp_path, clock):
    store = file_store(tmp_path)
    rt = runtime(tmp_path, store)
    pilot = Rollouts(rt, owner="me", clock=clock)
    assert asyncio.run(pilot.tick()) is None
    assert not pilot.lease.leading and rt.shadow_boost == {} and not pilot.active
    assert store.hold_lease(LEASE_NAME, "someone-else", 5) == "someone-else"
    assert topic("Reviews.Summary") == "rollout.reviews.summary"


@pytest.fixture
def redis_url() -> Iterator[str]:
    keys = (HASH_KEY, AUDIT_STREAM, ROLLOUTS_KEY, LEASE_PREFIX + LEASE_NAME, FIGURES_PREFIX + topic(ROUTE))
    with clean_redis(*keys):
        yield TEST_REDIS_URL


def test_a_failing_store_ends_a_round_quietly_and_the_next_one_carries_on(tmp_path, clock):
    store = file_store(tmp_path)
    rt = runtime(tmp_path, store)
    start(store)
    pilot = Rollouts(rt, owner="me", clock=clock)
    real = store.rollouts

    def down() -> Any:
        raise OverrideStoreError("Redis at 127.0.0.1:6379/15 is not reachable")

    store.rollouts = down  # type: ignore[method-assign]
    assert asyncio.run(pilot.tick()) is None and "not reachable" in (pilot.last_error or "")
    store.rollouts = real  # type: ignore[method-assign]
    asyncio.run(run_until([pilot], clock, [rt], lambda: the_rollout(store).state == "done"))
    assert pilot.last_error is None


def test_a_repeated_tick_failure_is_logged_once_then_counted(caplog: pytest.LogCaptureFixture):
    calls: list[int] = []
    failures: list[Exception] = []

    async def tick() -> None:
        calls.append(1)
        if len(calls) == 5:
            return
        if len(calls) == 6:
            raise asyncio.CancelledError
        raise AttributeError("'str' object has no attribute 'get'")

    with caplog.at_level("ERROR", logger="gateway.decider"), pytest.raises(asyncio.CancelledError):
        asyncio.run(run_every(tick, lambda: 0, failures.append))
    assert len(failures) == 1, "the callback (which logs the traceback) once"
    assert [r.getMessage() for r in caplog.records] == [
        "the tick failure AttributeError: 'str' object has no attribute 'get' repeated 3 more time(s)"
    ]
