"""Auto-offload: the decision as a pure function, the loop with a fake clock on a real override store
(file, and Redis database 15), one decider per store, the ``[autopilot]`` table's checks, and the
admin API's view."""

from __future__ import annotations

import asyncio
import copy
import os
import re
import threading
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from starlette.testclient import TestClient

from flags import Flags
from flags.model import Override
from flags.overrides import AUDIT_STREAM, HASH_KEY, LEASE_PREFIX, FileOverrideStore, RedisOverrideStore
from gateway import autopilot as autopilot_module
from gateway import decider as decider_module
from gateway import live as live_module
from gateway.accesslog import AccessLog
from gateway.admin import admin_app
from gateway.autopilot import (
    LEASE_NAME,
    Autopilot,
    AutopilotPolicy,
    LegacyFigures,
    RouteFigures,
    decide,
)
from gateway.live import LiveStats
from gateway.metrics import Metrics
from gateway.resilience import RetryBudget
from gateway.routes import RouteTableError, build_table, load_table
from gateway.runtime import Routing, Runtime, build_upstreams
from gateway.settings import DEFAULT_ROUTES_FILE, load_settings
from gateway.shadow import Shadow
from tests.support.redis_db import TEST_REDIS_URL, clean_redis
from tests.support.waiting import eventually

URLS = {name: "http://127.0.0.1:9" for name in ("legacy", "reviews", "recommendations")}
REDIS_URL = TEST_REDIS_URL
ROUTE = "reviews.summary"
ADMIN_TOKEN = "autopilot-test-admin-token"
NOW = 1_800_000_000.0

# ---------------------------------------------------------------- the decision (pure)

POLICY = AutopilotPolicy(enabled=True)  # the defaults: 5 s window, 99.9 %, 200 samples, 60 s cool-down
SHEDDING = LegacyFigures(shed=812, shed_seconds=5, calm_seconds=0.0)


def calm(seconds: float) -> LegacyFigures:
    return LegacyFigures(shed=0, shed_seconds=0, calm_seconds=seconds)


def route(**changes: Any) -> RouteFigures:
    values: dict[str, Any] = {
        "route": ROUTE,
        "candidate": "reviews",
        "auto_offload": True,
        "backend": "legacy",
        "source": "default",
        "override": None,
        "matches": 1_204,
        "mismatches": 0,
        "errors": 0,
        "breaker": "closed",
    }
    return RouteFigures(**{**values, **changes})


def override(actor: str, backend: str = "candidate", *, at: float = NOW, ttl: float = 3600) -> Override:
    return Override.create(
        route=ROUTE, backend=backend, reason="by hand", actor=actor, ttl_seconds=ttl, now=at
    )


def test_an_eligible_route_moves_while_legacy_sheds_with_the_figures_in_the_reason():
    plan = decide(POLICY, SHEDDING, [route()], NOW)
    assert plan.shedding
    [step] = plan.steps
    assert step.override is not None and step.expected is None
    assert (step.override.backend, step.override.actor) == ("candidate", "autopilot")
    assert step.override.expires_at == NOW + 3600
    assert step.reason == "legacy shed 812 req in 5 of the last 6 s; parity 100.00 % of 1,204 shadow samples"


def test_nothing_moves_while_legacy_does_not_shed_enough():
    # 80 % of a 5 s window is 4 seconds with shedding: 3 is a blip, not a spike.
    plan = decide(POLICY, LegacyFigures(shed=40, shed_seconds=3, calm_seconds=0), [route()], NOW)
    assert not plan.shedding and plan.steps == ()
    assert plan.verdicts[ROUTE] == "eligible: moves when legacy sheds"


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        ({"auto_offload": False}, "not opted in"),
        ({"matches": 150, "mismatches": 0}, "not enough parity evidence: 150 of 200"),
        ({"matches": 0, "mismatches": 0}, "not enough parity evidence: 0 of 200"),
        ({"matches": 998, "mismatches": 2}, "parity 99.80 % of 1,000 is below 99.9 %"),
        ({"override": override("alice", "legacy")}, "override by alice in force"),
        ({"override": override("alice"), "backend": "candidate", "source": "override"}, "override by alice"),
        ({"backend": "split", "source": "unleash"}, "not on legacy (split, from unleash)"),
        ({"breaker": "open"}, "candidate reviews breaker is open"),
        ({"breaker": "half_open"}, "candidate reviews breaker is half_open"),
        ({"errors": 30}, "candidate reviews failed 2.43 % of 1,234 shadow requests"),
    ],
)
def test_a_route_that_is_not_eligible_never_moves(changes: dict[str, Any], why: str):
    plan = decide(POLICY, SHEDDING, [route(**changes)], NOW)
    assert plan.steps == ()
    assert why in plan.verdicts[ROUTE]


def test_an_expired_human_override_does_not_hold_a_route_back_and_is_what_the_write_expects():
    expired = override("alice", "legacy", at=NOW - 7200, ttl=3600)
    [step] = decide(POLICY, SHEDDING, [route(override=expired)], NOW).steps
    assert step.expected == expired


def test_a_moved_route_goes_back_only_after_the_cool_down():
    moved = override("autopilot")
    figures = route(override=moved, backend="candidate", source="override")
    assert decide(POLICY, SHEDDING, [figures], NOW).steps == ()
    assert decide(POLICY, calm(59.9), [figures], NOW).steps == ()
    [step] = decide(POLICY, calm(60.0), [figures], NOW).steps
    assert (step.route, step.override, step.expected) == (ROUTE, None, moved)
    assert step.reason == "legacy has not shed for 60 s (cool-down 60 s): back to legacy"


def test_moved_routes_stay_while_their_traffic_would_not_fit_in_legacys_capacity():
    """Once the routes are gone legacy stops shedding; the cool-down alone brought them back
    mid-spike, over and over (the replay: moved, back, moved, back every 7 s)."""
    moved = override("autopilot")
    figures = route(override=moved, backend="candidate", source="override", candidate_rps=300.0)
    spike = LegacyFigures(shed=0, shed_seconds=0, calm_seconds=120.0, rps=60.0, capacity_rps=250.0)
    plan = decide(POLICY, spike, [figures], NOW)
    assert plan.steps == () and "once its traffic fits" in plan.verdicts[ROUTE]
    calmer = route(override=moved, backend="candidate", source="override", candidate_rps=100.0)
    [step] = decide(POLICY, spike, [calmer], NOW).steps  # 60 + 100 <= 80 % of 250
    assert step.override is None


def test_a_route_a_person_took_over_from_the_autopilot_is_never_released_by_it():
    theirs = override("alice")
    figures = route(override=theirs, backend="candidate", source="override")
    assert decide(POLICY, calm(3600), [figures], NOW).steps == ()


# ---------------------------------------------------------------- the [autopilot] table


def shipped_document() -> dict[str, Any]:
    return tomllib.loads(DEFAULT_ROUTES_FILE.read_text(encoding="utf-8"))


def document_with(autopilot: dict[str, Any] | None = None, **route_keys: Any) -> dict[str, Any]:
    document = copy.deepcopy(shipped_document())
    document["autopilot"] = {"enabled": True, **(autopilot or {})}
    for entry in document["routes"]:
        if entry["id"] == ROUTE:
            entry.update({"auto_offload": True, "shadow": {"sample_rate": 0.5}, **route_keys})
    return document


def test_the_shipped_table_has_the_autopilot_configured_and_off():
    table = load_table(DEFAULT_ROUTES_FILE, URLS)
    assert table.autopilot == AutopilotPolicy(enabled=False)
    assert not any(entry.auto_offload for entry in table.routes)


def test_a_table_turns_it_on_for_a_route():
    table = build_table(document_with({"cooldown_seconds": 30, "min_samples": 50}), URLS)
    assert table.autopilot == AutopilotPolicy(enabled=True, cooldown_seconds=30, min_samples=50)
    assert [entry.id for entry in table.routes if entry.auto_offload] == [ROUTE]


@pytest.mark.parametrize(
    ("autopilot", "message"),
    [
        ({"min_parity_percent": 100.5}, r"min_parity_percent \(100.5\) must be more than 0 and at most 100"),
        ({"min_parity_percent": 0}, r"min_parity_percent \(0\) must be more than 0"),
        ({"shed_window_seconds": -5}, r"shed_window_seconds \(-5\) must be 1 to 59 seconds"),
        ({"shed_window_seconds": 60}, r"shed_window_seconds \(60\) must be 1 to 59"),
        ({"cooldown_seconds": -1}, r"cooldown_seconds \(-1\) must be a positive number"),
        ({"cooldown_seconds": float("nan")}, r"cooldown_seconds \(nan\) must be a positive number"),
        ({"ttl_seconds": 8 * 86_400}, r"ttl_seconds \(691200\) must be more than 0 and at most 604800"),
        ({"interval_seconds": 0}, r"interval_seconds \(0\) must be 0.1 to 60"),
        ({"min_samples": 0}, r"min_samples \(0\) must be at least 1"),
        ({"min_samples": 1.5}, "min_samples must be a whole number"),
        ({"enabled": "yes"}, "enabled must be true or false"),
        ({"cooldown_seconds": True}, "cooldown_seconds must be a number"),
        ({"cool_down": 60}, "unknown setting 'cool_down'"),
    ],
)
def test_bad_autopilot_settings_are_refused_with_a_clear_message(autopilot: dict[str, Any], message: str):
    with pytest.raises(RouteTableError, match=r"^\[autopilot\] .*" + message):
        build_table(document_with(autopilot), URLS)


def test_every_bad_setting_is_named_at_once():
    with pytest.raises(RouteTableError) as refused:
        build_table(document_with({"min_parity_percent": 101, "ttl_seconds": -1, "enabled": 1}), URLS)
    text = str(refused.value)
    assert "min_parity_percent" in text and "ttl_seconds" in text and "enabled" in text


@pytest.mark.parametrize(
    ("route_keys", "message"),
    [
        ({"auto_offload": "yes"}, "auto_offload must be true or false"),
        ({"shadow": {"sample_rate": 0}}, "auto_offload needs parity evidence"),
        ({"methods": ["GET", "POST"]}, "only GET/HEAD methods"),  # the POST would move unproven
    ],
)
def test_a_route_that_could_never_prove_parity_cannot_opt_in(route_keys: dict[str, Any], message: str):
    with pytest.raises(RouteTableError, match=message):
        build_table(document_with(**route_keys), URLS)


def test_it_cannot_be_on_without_a_limiter_on_legacy_to_watch():
    document = document_with()
    del document["clusters"]["legacy"]["limiter"]
    with pytest.raises(RouteTableError, match="enabled needs a limiter on the default cluster legacy"):
        build_table(document, URLS)
    document["autopilot"]["enabled"] = False
    assert build_table(document, URLS).autopilot == AutopilotPolicy(enabled=False)


def test_a_write_route_cannot_opt_in():
    document = document_with()
    for entry in document["routes"]:
        if entry["id"] == "reviews.create":
            entry.update({"auto_offload": True, "shadow": {"sample_rate": 1.0}})
    with pytest.raises(
        RouteTableError, match=re.escape("route reviews.create: auto_offload needs parity evidence")
    ):
        build_table(document, URLS)


# ---------------------------------------------------------------- the loop, on a real store


class Clock:
    """One fake time for the live figures, the decider and the admin view."""

    def __init__(self) -> None:
        self.now = float(int(time.time()))

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(live_module, "time", SimpleNamespace(time=fake))
    monkeypatch.setattr(autopilot_module, "time", SimpleNamespace(time=fake))
    return fake


def runtime(tmp_path: Path, store: Any, **autopilot: Any) -> Runtime:
    settings = load_settings(
        {"VAR_DIR": str(tmp_path), "GATEWAY_ACCESS_LOG": "false", "GATEWAY_ADMIN_TOKEN": ADMIN_TOKEN}
    )
    table = build_table(document_with({"min_samples": 200, **autopilot}), URLS)
    metrics = Metrics.create()
    return Runtime(
        settings=settings,
        routing=Routing(table=table, upstreams=build_upstreams(table, metrics)),
        flags=Flags(overrides=store, providers=[]),
        verifier=None,  # type: ignore[arg-type]  # the autopilot never authenticates anything
        metrics=metrics,
        retry_budget=RetryBudget(),
        shadow=Shadow(),
        live=LiveStats(),
        access_log=AccessLog(enabled=False),
    )


def file_store(tmp_path: Path) -> FileOverrideStore:
    return FileOverrideStore(tmp_path / "overrides.json", tmp_path / "audit.jsonl")


def prove_parity(rt: Runtime, samples: int = 250) -> None:
    shadow = Shadow(on_result=rt.record_shadow)  # as the app wires it
    for _ in range(samples):
        shadow._count(rt.metrics, ROUTE, "match", "reviews")


def test_only_the_candidates_own_failures_count_against_it(tmp_path):
    rt = runtime(tmp_path, file_store(tmp_path))
    shadow = Shadow(on_result=rt.record_shadow)
    shadow._count(rt.metrics, ROUTE, "error", "reviews")  # the candidate did not answer a shadow
    shadow._count(rt.metrics, ROUTE, "error", "legacy")  # legacy did not (the route on the candidate)
    shadow._count(rt.metrics, ROUTE, "mismatch", "legacy")  # a difference is one, either way round
    shadow._count(rt.metrics, ROUTE, "dropped")  # never compared: no evidence
    assert rt.live.shadow_results()[ROUTE] == {"match": 0, "mismatch": 1, "error": 1}


def moves(store: Any) -> list[tuple[str, str]]:
    return [(entry.action, entry.actor) for entry in store.audit() if entry.route == ROUTE]


def test_the_loop_moves_a_proven_route_and_brings_it_back_after_a_calm_cool_down(tmp_path, clock):
    store = file_store(tmp_path)
    rt = runtime(tmp_path, store)
    pilot = Autopilot(rt, owner="me", clock=clock)

    async def scenario() -> None:
        prove_parity(rt)
        assert (await pilot.tick()) is not None and pilot.leading
        assert ROUTE not in store.snapshot(), "legacy is calm: nothing moves"
        for _ in range(4):  # legacy sheds every second: the 4th second makes 80 % of the window
            clock.advance(1)
            rt.live.record_shed("legacy")
            await pilot.tick()
        moved = store.snapshot()[ROUTE]
        assert (moved.backend, moved.actor) == ("candidate", "autopilot")
        assert rt.flags.describe(ROUTE).backend == "candidate"
        assert "parity 100.00 % of 250 shadow samples" in moved.reason
        # Shedding stops; 30 s later one more shed second: not a spike, but the cool-down starts afresh.
        clock.advance(30)
        await pilot.tick()
        clock.advance(1)
        rt.live.record_shed("legacy")
        await pilot.tick()
        clock.advance(40)
        await pilot.tick()
        assert ROUTE in store.snapshot(), "40 s after the last shed: still on the candidate (no flapping)"
        clock.advance(21)
        await pilot.tick()
        assert ROUTE not in store.snapshot(), "a full cool-down without shedding: back to legacy"

    asyncio.run(scenario())
    assert moves(store) == [("set", "autopilot"), ("release", "autopilot")]
    assert "legacy has not shed for 60 s (cool-down 60 s)" in store.audit()[-1].reason


def test_a_route_without_enough_parity_evidence_never_moves_and_says_why(tmp_path, clock):
    store = file_store(tmp_path)
    rt = runtime(tmp_path, store)
    pilot = Autopilot(rt, owner="me", clock=clock)

    async def scenario() -> None:
        prove_parity(rt, samples=199)
        for _ in range(8):
            clock.advance(1)
            rt.live.record_shed("legacy")
            plan = await pilot.tick()
        assert plan is not None and plan.shedding and plan.steps == ()
        assert "not enough parity evidence: 199 of 200" in plan.verdicts[ROUTE]

    asyncio.run(scenario())
    assert store.snapshot() == {}


def test_a_human_override_made_between_read_and_write_wins(tmp_path, clock):
    store = file_store(tmp_path)
    rt = runtime(tmp_path, store)
    pilot = Autopilot(rt, owner="me", clock=clock)
    alice = override("alice", "legacy", at=clock.now)
    real_apply = store.apply

    def alice_first(changes, **kwargs):  # alice writes just before the decider does
        real_apply([(ROUTE, alice)], actor="alice", reason="keep it on legacy")
        return real_apply(changes, **kwargs)

    store.apply = alice_first  # type: ignore[method-assign]

    async def scenario() -> None:
        prove_parity(rt)
        for _ in range(5):
            clock.advance(1)
            rt.live.record_shed("legacy")
            await pilot.tick()

    asyncio.run(scenario())
    assert store.snapshot()[ROUTE].actor == "alice"
    assert moves(store) == [("set", "alice")], "the decider's write expected no override and wrote nothing"


def test_a_decider_that_takes_over_starts_the_cool_down_afresh(tmp_path, clock):
    store, watched = file_store(tmp_path), file_store(tmp_path)
    first, second = runtime(tmp_path, store), runtime(tmp_path, watched)
    a, b = Autopilot(first, owner="a", clock=clock), Autopilot(second, owner="b", clock=clock)
    watched.start()  # b's gateway sees a's moves as every gateway does

    async def scenario() -> None:
        prove_parity(first)
        for _ in range(5):
            clock.advance(1)
            first.live.record_shed("legacy")
            await a.tick()
            await b.tick()
        assert store.snapshot()[ROUTE].actor == "autopilot" and b.leader == "a"
        assert eventually(lambda: ROUTE in watched.snapshot())
        clock.advance(120)  # long calm, but a stops (shutdown) before its next tick
        await a.stop()
        await b.tick()
        assert b.leading and ROUTE in watched.snapshot(), "b cannot know legacy's past: it waits a cool-down"
        clock.advance(60)
        await b.tick()
        assert ROUTE not in watched.snapshot()

    try:
        asyncio.run(scenario())
    finally:
        watched.stop()


@pytest.fixture
def redis_url() -> Iterator[str]:
    with clean_redis(HASH_KEY, AUDIT_STREAM, LEASE_PREFIX + LEASE_NAME):
        yield REDIS_URL


@pytest.mark.parametrize("kind", ["file", "redis"])
def test_two_gateways_on_one_store_have_one_decider(tmp_path, clock, request, kind):
    if kind == "file":
        stores = [file_store(tmp_path), file_store(tmp_path)]
    else:
        url = request.getfixturevalue("redis_url")
        stores = [RedisOverrideStore(url), RedisOverrideStore(url)]
    runtimes = [runtime(tmp_path, store) for store in stores]
    pilots = [Autopilot(rt, owner=f"gateway-{n}", clock=clock) for n, rt in enumerate(runtimes)]
    for store in stores:
        store.start()

    async def scenario() -> list[Any]:
        plans = []
        for rt in runtimes:  # both see the same spike and the same evidence
            prove_parity(rt)
        for _ in range(6):
            clock.advance(1)
            for rt in runtimes:
                rt.live.record_shed("legacy")
            plans.append(await asyncio.gather(*(pilot.tick() for pilot in pilots)))
        return plans

    try:
        plans = asyncio.run(scenario())
    finally:
        for store in stores:
            store.stop()
    assert all(sum(plan is not None for plan in pair) == 1 for pair in plans), "one decider per tick"
    leaders = {pilot.leader for pilot in pilots}
    assert len(leaders) == 1 and leaders <= {"gateway-0", "gateway-1"}
    assert moves(stores[0]) == [("set", "autopilot")], "the route moved once, by one decider"


def test_the_loop_survives_a_failing_and_a_hung_store(tmp_path, clock, monkeypatch):
    monkeypatch.setattr(decider_module, "STORE_TIMEOUT_SECONDS", 0.05)
    store = file_store(tmp_path)
    rt = runtime(tmp_path, store, interval_seconds=0.1)
    pilot = Autopilot(rt, owner="me", clock=clock)
    hang, calls = threading.Event(), {"n": 0}
    real_hold = store.hold_lease

    def flaky_hold(name: str, owner: str, ttl: float) -> str:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("something nobody expected")
        if calls["n"] == 2:
            hang.wait(10)  # a store that never answers: the tick gives up, the thread ends later
        return real_hold(name, owner, ttl)

    store.hold_lease = flaky_hold  # type: ignore[method-assign]

    async def scenario() -> None:
        task = asyncio.create_task(pilot.run())
        try:
            for _ in range(500):  # polls, not a fixed wait: done as soon as the third call answers
                if pilot.leading:
                    break
                await asyncio.sleep(0.01)
        finally:
            hang.set()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    asyncio.run(scenario())
    assert pilot.leading and calls["n"] >= 3


def test_turned_off_it_gives_the_lease_back_and_decides_nothing(tmp_path, clock):
    store = file_store(tmp_path)
    rt = runtime(tmp_path, store)
    pilot = Autopilot(rt, owner="me", clock=clock)

    async def scenario() -> None:
        await pilot.tick()
        assert pilot.leading
        rt.routing = Routing(
            table=build_table(document_with({"enabled": False}), URLS), upstreams=rt.routing.upstreams
        )
        assert await pilot.tick() is None

    asyncio.run(scenario())
    assert not pilot.leading and store.hold_lease(LEASE_NAME, "other", 30) == "other"


def test_a_bad_autopilot_table_on_reload_keeps_the_table_in_force(tmp_path):
    routes_file = tmp_path / "routes.toml"
    routes_file.write_text(DEFAULT_ROUTES_FILE.read_text(encoding="utf-8"))
    settings = load_settings({"VAR_DIR": str(tmp_path), "ROUTES_FILE": str(routes_file)})
    rt = runtime(tmp_path, file_store(tmp_path))
    rt.settings = settings
    before = rt.table
    routes_file.write_text(
        DEFAULT_ROUTES_FILE.read_text(encoding="utf-8").replace(
            "min_parity_percent = 99.9", "min_parity_percent = 120"
        )
    )
    with pytest.raises(RouteTableError, match="min_parity_percent"):
        asyncio.run(rt.reload())
    assert rt.table is before


# ---------------------------------------------------------------- what people see


def test_the_admin_api_shows_the_decider_the_verdicts_and_the_moves(tmp_path, clock):
    store = file_store(tmp_path)
    rt = runtime(tmp_path, store)
    pilot = Autopilot(rt, owner="me", clock=clock)

    async def spike() -> None:
        prove_parity(rt)
        for _ in range(5):
            clock.advance(1)
            rt.live.record_shed("legacy")
            await pilot.tick()

    asyncio.run(spike())
    app = admin_app()
    app.state.runtime, app.state.autopilot = rt, pilot
    with TestClient(app) as client:
        answer = client.get("/_gateway/admin/autopilot", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        routes = client.get("/_gateway/admin/routes", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["enabled"], body["leader"], body["this_worker"]) == (True, "me", "me")
    assert body["legacy"]["shedding"] is True and body["legacy"]["shed"] == 5
    verdicts = {row["route"]: row["verdict"] for row in body["routes"]}
    assert verdicts[ROUTE].startswith("moved by the autopilot")
    assert verdicts["reviews.list"] == "not opted in (auto_offload = false)"
    [decision] = body["decisions"]
    assert (decision["route"], decision["actor"], decision["action"]) == (ROUTE, "autopilot", "set")
    rows = {row["route"]: row for row in routes.json()["routes"]}
    assert rows[ROUTE]["auto_offload"] is True and rows[ROUTE]["override"]["actor"] == "autopilot"


def test_parity_evidence_is_summed_over_every_worker(tmp_path: Path):
    other = LiveStats(tmp_path)
    for result in ("match", "match", "mismatch", "error", "dropped"):
        other.record_shadow(ROUTE, result)
    other.publish()
    # Publishing names the file after this process; pretend it came from another worker.
    os.replace(tmp_path / f"live-{os.getpid()}.json", tmp_path / "live-4242.json")
    mine = LiveStats(tmp_path)
    mine.record_shadow(ROUTE, "match")
    mine.record_shed("legacy")
    mine.publish()  # this worker's own file is not counted twice
    assert mine.shadow_results()[ROUTE] == {"match": 3, "mismatch": 1, "error": 1}
    # What the decider does: this worker's figures copied on the loop, the files read in a thread.
    own = mine.own_figures()
    assert mine.shadow_results(own=own)[ROUTE] == {"match": 3, "mismatch": 1, "error": 1}
    assert mine.clusters(5, own=own)["legacy"]["shed"] == 1
