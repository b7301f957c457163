"""Rollouts in flags: what a person may ask for, flagctl rollout on the file store, and both stores'
rollout documents (written with their override in one conditional write) and per-worker figures.
Redis tests use the real Redis at 127.0.0.1:6379, database 15. The gates: tests/gateway/test_rollout*.py."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from flags.cli import app
from flags.model import Override
from flags.overrides import (
    AUDIT_STREAM,
    FIGURES_PREFIX,
    HASH_KEY,
    ROLLOUTS_KEY,
    FileOverrideStore,
    OverrideConflict,
    OverrideStore,
    OverrideStoreError,
    RedisOverrideStore,
    change_rollout,
    start_rollouts,
    write_rollout,
)
from flags.rollout import PERSON_CHANGES, InvalidRollout, Plan, RolloutStateError, start_routes
from flags.routes_file import SHIPPED_ROUTES_FILE, route_methods
from flags.settings import ensure_flags_file, load_flags_settings
from tests.support.redis_db import TEST_REDIS_URL, clean_redis

ROUTE = "reviews.list"
PLAN = Plan(steps=(1, 5, 25, 50, 100), every_seconds=60)


@pytest.mark.parametrize(
    ("values", "field", "message"),
    [
        ({"steps": [5, 1]}, "steps", "must increase"),
        ({"steps": [1, 1]}, "steps", "must increase"),
        ({"steps": [1, 101]}, "steps", "from 0 to 100"),
        ({"steps": [-1, 50]}, "steps", "from 0 to 100"),
        ({"steps": []}, "steps", "1 to 20 whole percentages"),
        ({"steps": [0]}, "steps", "the last step is above 0"),
        ({"steps": [1.5, 50]}, "steps", "whole percentages"),
        ({"every_seconds": -60}, "every_seconds", "1 s to 86400 s"),
        ({"every_seconds": 0}, "every_seconds", "1 s to 86400 s"),
        ({"every_seconds": float("nan")}, "every_seconds", "1 s to 86400 s"),
        ({"min_samples": 0}, "min_samples", "from 1"),
        ({"min_samples": True}, "min_samples", "whole number"),
        ({"min_parity": 0}, "min_parity", "above 0"),
        ({"min_parity": 100.1}, "min_parity", "at most 100"),
        ({"max_error_ratio": -1}, "max_error_ratio", "from 0"),
        ({"max_p99_ratio": 0}, "max_p99_ratio", "above 0"),
    ],
)
def test_a_plan_out_of_range_is_refused_naming_the_field(values: dict[str, Any], field: str, message: str):
    arguments = {"steps": [1, 5, 25, 50, 100], "every_seconds": 60, **values}
    with pytest.raises(InvalidRollout) as refused:
        Plan.create(**arguments)
    assert message in " ".join(refused.value.fields[field])


def test_a_plan_may_start_with_a_shadow_only_step_and_stop_short_of_100():
    assert Plan.create(steps=[0, 10, 50], every_seconds=1).steps == (0, 10, 50)


# ---------------------------------------------------------------- flagctl rollout on the file store


@pytest.fixture
def run(tmp_path: Path):
    runner = CliRunner()
    env = {"VAR_DIR": str(tmp_path), "REDIS_URL": "", "UNLEASH_URL": "", "COLUMNS": "200"}
    ensure_flags_file(load_flags_settings(env))

    def invoke(*args: str) -> Any:
        return runner.invoke(app, list(args), env=env)

    return invoke


FAST = ("--steps", "1,5,25,50,100", "--every", "60s")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("nope", *FAST), "ROUTE 'nope' must be a route id of the route table"),
        (("reviews.create", *FAST), "is a write route"),
        ((ROUTE, "--steps", "1,5,5", "--every", "60s"), "--steps must increase"),
        (
            (ROUTE, "--steps", "10,200", "--every", "60s"),
            "--steps must be 1 to 20 whole percentages from 0 to 100",
        ),
        ((ROUTE, "--steps", "1;5", "--every", "60s"), "--steps takes whole percentages"),
        ((ROUTE, "--steps", "1,5", "--every", "-60s"), "--every takes a duration"),
        ((ROUTE, "--steps", "1,5", "--every", "2d"), "--every must be a window of 1 s to 86400 s"),
        ((ROUTE, *FAST, "--min-samples", "0"), "--min-samples must be a whole number from 1"),
        ((ROUTE, *FAST, "--max-p99-ratio", "0"), "--max-p99-ratio must be a number above 0"),
        ((*FAST,), "name one ROUTE or pass --all"),
        ((ROUTE, "--all", *FAST), "name one ROUTE or pass --all"),
    ],
)
def test_bad_input_exits_2_with_a_clear_message_and_writes_nothing(run, tmp_path: Path, args, message):
    result = run("rollout", "start", *args, "--reason", "x")
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not (tmp_path / "overrides.json").exists()


def test_start_status_pause_resume_abort(run):
    started = run("rollout", "start", ROUTE, *FAST, "--reason", "move it", "--actor", "alice", "--json")
    assert started.exit_code == 0, started.output
    [document] = json.loads(started.output)
    status = json.loads(run("rollout", "status", ROUTE, "--json").output)
    assert {key: status[key] for key in ("route", "state", "percent", "step")} == {
        "route": ROUTE,
        "state": "running",
        "percent": 1,
        "step": 1,
    }
    assert (
        status["reason"] == "step 1/5: 1 % to the candidate (started by alice: move it)" == document["reason"]
    )
    routes = {row["route"]: row for row in json.loads(run("status", "--json").output)}
    assert (routes[ROUTE]["backend"], routes[ROUTE]["percent"]) == ("split", 1)
    assert run("rollout", "start", ROUTE, *FAST, "--reason", "again").exit_code == 2, "one at a time"
    assert run("rollout", "pause", ROUTE, "--reason", "look", "--actor", "bob").exit_code == 0
    assert json.loads(run("rollout", "status", "--json").output)[0]["state"] == "paused"
    assert "only a running one pauses" in run("rollout", "pause", ROUTE, "--reason", "again").output
    assert run("rollout", "resume", ROUTE, "--reason", "go").exit_code == 0
    aborted = run("rollout", "abort", "--all", "--reason", "not today", "--json")
    assert json.loads(aborted.output)[0]["state"] == "aborted"
    routes = {row["route"]: row for row in json.loads(run("status", "--json").output)}
    assert (routes[ROUTE]["backend"], routes[ROUTE]["source"]) == ("legacy", "override")
    trail = json.loads(run("audit", "--json").output)
    assert [entry["actor"] for entry in trail] == [
        "rollout"
    ] * 3  # start, resume, abort (pause: no override change)
    assert "aborted at 1 % by" in trail[-1]["reason"]
    table = run("rollout", "status", ROUTE).output
    assert "aborted" in table and "start" in table and "pause" in table, "the history follows the table"


def test_all_starts_the_first_read_route_and_queues_the_others(run):
    result = run("rollout", "start", "--all", *FAST, "--reason", "everything")
    assert result.exit_code == 0, result.output
    assert "not rolled out (write routes, never shadowed): reviews.create, reviews.helpful" in result.output
    rollouts = json.loads(run("rollout", "status", "--json").output)
    assert [(r["route"], r["state"]) for r in rollouts][:3] == [
        ("reviews.list", "running"),
        ("reviews.summary", "queued"),
        ("reviews.detail", "queued"),
    ]
    reads = [
        route for route, methods in route_methods(SHIPPED_ROUTES_FILE).items() if methods <= {"GET", "HEAD"}
    ]
    assert [r["route"] for r in rollouts] == reads and len({r["batch"] for r in rollouts}) == 1


def test_start_refuses_a_route_a_person_holds_naming_who_and_writes_nothing(run, tmp_path: Path):
    held = run("route", ROUTE, "--to", "legacy", "--reason", "not tonight", "--actor", "bob")
    assert held.exit_code == 0, held.output
    result = run("rollout", "start", ROUTE, *FAST, "--reason", "move it")
    assert result.exit_code == 2, result.output
    assert "a person's override holds reviews.list (bob set legacy (not tonight))" in result.output
    assert json.loads(run("rollout", "status", "--json").output) == []
    routes = {row["route"]: row for row in json.loads(run("status", "--json").output)}
    assert routes[ROUTE]["backend"] == "legacy", "bob's override stays"
    assert run("rollout", "start", "--all", *FAST, "--reason", "all").exit_code == 2, "refused whole"
    assert run("release", ROUTE, "--reason", "go ahead", "--actor", "bob").exit_code == 0
    assert run("rollout", "start", ROUTE, *FAST, "--reason", "move it").exit_code == 0


def test_status_without_rollouts_and_of_a_route_without_one(run):
    assert json.loads(run("rollout", "status", "--json").output) == []
    assert run("rollout", "status", ROUTE).exit_code == 2


# ---------------------------------------------------------------- both stores


@pytest.fixture
def redis_url() -> Iterator[str]:
    with clean_redis(HASH_KEY, AUDIT_STREAM, ROLLOUTS_KEY, FIGURES_PREFIX + "rollout.test"):
        yield TEST_REDIS_URL


@pytest.fixture(params=["file", "redis"])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[OverrideStore, OverrideStore]]:
    if request.param == "file":
        paths = (tmp_path / "overrides.json", tmp_path / "audit.jsonl")
        yield FileOverrideStore(*paths), FileOverrideStore(*paths)
        return
    url = request.getfixturevalue("redis_url")
    first, second = RedisOverrideStore(url), RedisOverrideStore(url)
    yield first, second
    first.stop()
    second.stop()


def test_a_rollout_is_written_with_its_override_and_only_over_the_version_it_was_read_at(stores):
    first, second = stores
    [(rollout, override)] = start_routes(
        [ROUTE], PLAN, actor="alice", reason="go", now=time.time(), existing={}
    )
    write_rollout(rollout, override, first)
    assert second.rollouts()[ROUTE] == rollout
    assert second.audit()[-1].actor == "rollout" and second.audit()[-1].after == override.to_json()  # type: ignore[union-attr]
    [_, pause] = PERSON_CHANGES["pause"]
    paused, _ = pause(rollout, "bob", "look", time.time())
    write_rollout(paused, None, second)
    stale, _ = pause(rollout, "carol", "me too", time.time())  # made from version 1, stored is 2
    with pytest.raises(OverrideConflict):
        write_rollout(stale, None, first)
    assert first.rollouts()[ROUTE].reason.startswith("paused at 1 % by bob")
    with pytest.raises(RolloutStateError):
        start_routes([ROUTE], PLAN, actor="dave", reason="again", now=time.time(), existing=first.rollouts())
    [_, abort] = PERSON_CHANGES["abort"]
    aborted = change_rollout(first, ROUTE, lambda r: abort(r, "dave", "stop", time.time()))
    assert aborted.version == 3 and second.rollouts()[ROUTE].state == "aborted"
    assert first.snapshot()[ROUTE].backend == "legacy" and first.snapshot()[ROUTE].actor == "rollout"


def test_a_decider_write_expecting_the_override_it_wrote_is_refused_after_a_person_changed_it(stores):
    first, second = stores
    [(rollout, override)] = start_routes(
        [ROUTE], PLAN, actor="alice", reason="go", now=time.time(), existing={}
    )
    write_rollout(rollout, override, first)
    person = Override.create(route=ROUTE, backend="legacy", reason="hands off", actor="erin")
    second.apply([(ROUTE, person)], actor="erin", reason="hands off")
    later = dataclasses.replace(rollout, version=2)  # the decider's next tick, made before erin's change
    with pytest.raises(OverrideConflict):
        first.apply([], actor="rollout", reason="tick", expected={ROUTE: rollout.applied}, rollout=later)
    assert first.rollouts()[ROUTE].version == 1


def test_start_rollouts_writes_over_the_override_it_found(stores):
    first, second = stores
    earlier = Override.create(route=ROUTE, backend="legacy", reason="an old rollout's", actor="rollout")
    first.apply([(ROUTE, earlier)], actor="rollout", reason="an old rollout's")
    [started] = start_rollouts(first, [ROUTE], PLAN, actor="alice", reason="go", now=time.time())
    assert second.stored()[ROUTE] == started.applied and started.applied is not None
    # An override a person set after the read: the start's conditional write is refused.
    erin = Override.create(route=ROUTE, backend="legacy", reason="hands off", actor="erin")

    class Stale:
        def __getattr__(self, name: str) -> Any:
            return getattr(second, name)

        def stored(self) -> Any:
            found = second.stored()
            second.apply([(ROUTE, erin)], actor="erin", reason="hands off")
            return found

    [_, abort] = PERSON_CHANGES["abort"]
    change_rollout(first, ROUTE, lambda r: abort(r, "alice", "again", time.time()))
    with pytest.raises(OverrideConflict):
        start_rollouts(Stale(), [ROUTE], PLAN, actor="alice", reason="go", now=time.time())  # type: ignore[arg-type]
    assert first.stored()[ROUTE] == erin and first.rollouts()[ROUTE].state == "aborted"


def test_abort_leaves_a_persons_override_in_place(stores):
    first, second = stores
    [started] = start_rollouts(first, [ROUTE], PLAN, actor="alice", reason="go", now=time.time())
    erin = Override.create(route=ROUTE, backend="candidate", percent=30, reason="my call", actor="erin")
    second.apply([(ROUTE, erin)], actor="erin", reason="my call")  # before the decider noticed
    [_, abort] = PERSON_CHANGES["abort"]
    aborted = change_rollout(first, ROUTE, lambda r: abort(r, "alice", "stop", time.time()))
    assert aborted.state == "aborted"
    assert "the route keeps erin set candidate 30 % (my call)" in aborted.reason
    assert second.stored()[ROUTE] == erin and aborted.applied == started.applied
    assert second.audit()[-1].actor == "erin", "nothing written over erin's override"


def test_the_file_store_keeps_rollouts_and_overrides_in_one_document(tmp_path: Path, monkeypatch):
    store = FileOverrideStore(tmp_path / "overrides.json", tmp_path / "audit.jsonl")
    [(rollout, override)] = start_routes(
        [ROUTE], PLAN, actor="alice", reason="go", now=time.time(), existing={}
    )
    write_rollout(rollout, override, store)
    assert sorted(path.name for path in tmp_path.iterdir() if not path.name.endswith(".lock")) == [
        "audit.jsonl",
        "overrides.json",
    ]
    document = json.loads((tmp_path / "overrides.json").read_text())
    assert document["rollouts"][ROUTE]["applied"] == document["overrides"][ROUTE]

    def full(*_: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("flags.overrides.os.replace", full)
    [_, pause] = PERSON_CHANGES["pause"]
    with pytest.raises(OverrideStoreError, match="No space left"):
        write_rollout(pause(rollout, "bob", "look", time.time())[0], None, store)
    assert store.rollouts()[ROUTE] == rollout and store.stored()[ROUTE] == override


def test_figures_are_per_worker_and_old_ones_are_ignored(stores):
    first, second = stores
    first.put_figures("rollout.test", "host/1/a", {"legacy": [[1, 2, 0, {}]]})
    second.put_figures("rollout.test", "host/2/b", {"legacy": [[1, 3, 0, {}]]})
    first.put_figures("rollout.test", "host/1/a", {"legacy": [[1, 4, 0, {}]]})  # replaced, not added
    assert first.figures("rollout.test") == {
        "host/1/a": {"legacy": [[1, 4, 0, {}]]},
        "host/2/b": {"legacy": [[1, 3, 0, {}]]},
    }
    # Documents written up to a second from now count as too old: every one here.
    assert second.figures("rollout.test", max_age=-1.0) == {}
    with pytest.raises(ValueError, match="figures topic"):
        first.put_figures("../escape", "w", {})


def test_a_malformed_stored_rollout_is_skipped_not_fatal(tmp_path: Path):
    store = FileOverrideStore(tmp_path / "overrides.json", tmp_path / "audit.jsonl")
    [(rollout, override)] = start_routes(
        [ROUTE], PLAN, actor="alice", reason="go", now=time.time(), existing={}
    )
    write_rollout(rollout, override, store)
    document = json.loads((tmp_path / "overrides.json").read_text())
    document["rollouts"]["reviews.summary"] = {
        **document["rollouts"][ROUTE],
        "route": "reviews.summary",
        "steps": [9, 1],
    }
    (tmp_path / "overrides.json").write_text(json.dumps(document))
    assert list(store.rollouts()) == [ROUTE]
