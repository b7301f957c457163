"""Rollouts end to end: real gateway processes (two workers) on the tests' Redis (database 15), the real
monolith, and as reviews' candidate a proxy in front of the real reviews service that answers
correctly, changes one field, or fails (tests/support/altering_proxy.py). flagctl starts, pauses and
reads the rollouts, as ops would. Short windows (1 s, 20 samples): each scenario takes seconds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from flags.cli import app as flagctl
from flags.overrides import AUDIT_STREAM, FIGURES_PREFIX, HASH_KEY, LEASE_PREFIX, ROLLOUTS_KEY
from gateway.rollout import LEASE_NAME, topic
from tests.gateway.conftest import ADMIN_TOKEN, Stack, _gateway
from tests.support.redis_db import TEST_REDIS_URL, clean_redis
from tests.support.servers import free_port, serve
from tests.support.waiting import eventually

ROUTE = "reviews.summary"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
KEYS = (HASH_KEY, AUDIT_STREAM, ROLLOUTS_KEY, LEASE_PREFIX + LEASE_NAME, FIGURES_PREFIX + topic(ROUTE))
# The test proxy (httpx, in Python) adds tens of ms on a busy machine: the candidate really is slower
# than legacy here, and the latency gate would (rightly) step it back. Latency is not what these
# scenarios test (tests/gateway/test_rollout.py does), so its ratio is generous.
FAST = ["--steps", "1,50,100", "--every", "1s", "--min-samples", "20", "--max-p99-ratio", "20"]


@pytest.fixture(scope="module")
def proxy(stack: Stack) -> Iterator[str]:
    port = free_port()
    env = {**os.environ, "UPSTREAM": stack.reviews}
    command = [sys.executable, "-m", "uvicorn", "tests.support.altering_proxy:app", "--port", str(port),
               "--log-level", "warning"]  # fmt: skip
    with serve(command, env, port, stack.work / "altering-proxy.log") as url:
        yield url


def _env(stack: Stack, proxy: str) -> dict[str, str]:
    return {
        "LEGACY_URL": stack.legacy,
        "REVIEWS_URL": proxy,
        "RECOMMENDATIONS_URL": stack.recommendations,
        "REDIS_URL": TEST_REDIS_URL,
    }


@pytest.fixture(scope="module")
def redis_keys() -> Iterator[None]:
    with clean_redis(*KEYS):
        yield


@pytest.fixture(scope="module")
def gateway(stack: Stack, proxy: str, redis_keys: None) -> Iterator[str]:
    """Two workers on Redis, reviews' candidate behind the proxy; every route on legacy by default."""
    with ExitStack() as processes:
        url, _ = _gateway(processes, stack.work, "gw-rollouts", _env(stack, proxy), workers=2)
        yield url


@pytest.fixture
def clean(gateway: str, proxy: str) -> Iterator[str]:
    with clean_redis(*KEYS):
        mode(proxy, "healthy")
        yield gateway


def mode(proxy: str, name: str, every: int = 1) -> None:
    answer = httpx.post(
        f"{proxy}/_proxy/mode", json={"mode": name, "every": every, "field": "rating_average"}
    )
    assert answer.status_code == 200


def run_flagctl(*args: str) -> Any:
    env = {"REDIS_URL": TEST_REDIS_URL, "UNLEASH_URL": "", "COLUMNS": "200"}
    result = CliRunner().invoke(flagctl, list(args), env=env)
    assert result.exit_code == 0, result.output
    return json.loads(result.output) if "--json" in args else result.output


def status() -> dict[str, Any]:
    document: dict[str, Any] = run_flagctl("rollout", "status", ROUTE, "--json")
    return document


@contextmanager
def load(url: str, clients: int = 3) -> Iterator[None]:
    """Clients reading the rolled-out route (anonymous, items 1..40), a new connection each time so
    both workers get some, until the block ends."""
    stop = threading.Event()

    def client(offset: int) -> None:
        n = offset
        while not stop.is_set():
            n = n % 40 + 1
            with httpx.Client(timeout=10) as one:
                one.get(f"{url}/api/v1/reviews/items/{n}/summary")

    threads = [threading.Thread(target=client, args=(n * 13,), daemon=True) for n in range(clients)]
    for thread in threads:
        thread.start()
    try:
        yield
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=15)


def served_by(url: str) -> str:
    return httpx.get(f"{url}/api/v1/reviews/items/3/summary").headers["x-served-by"]


def test_a_healthy_candidate_reaches_done_with_the_figures_of_both_workers(clean: str):
    with load(clean):
        run_flagctl("rollout", "start", ROUTE, *FAST, "--reason", "move summary")
        assert eventually(lambda: status()["state"] in ("done", "rolled_back"), timeout=90, interval=0.5)
    final = status()
    assert (final["state"], final["percent"]) == ("done", 100), final["reason"]
    assert [event["action"] for event in final["history"]] == ["start", "advance", "advance", "done"]
    for step in final["history"][1:]:  # the figures that justified each step
        gates = step["gates"]
        assert gates["compared"] >= 20 and gates["parity_percent"] == 100.0
        assert gates["gates"]["errors"] == gates["gates"]["parity"] == "pass"
    assert any(step["gates"]["workers"] == 2 for step in final["history"][1:]), "both workers' traffic"
    assert served_by(clean) == "reviews"
    route = next(row for row in run_flagctl("status", "--json") if row["route"] == ROUTE)
    assert (route["backend"], route["source"], route["last_change"]["actor"]) == (
        "candidate",
        "override",
        "rollout",
    )


def test_a_candidate_that_changes_a_field_is_rolled_back_naming_parity_and_the_field(clean: str, proxy: str):
    mode(proxy, "alter", every=5)
    with load(clean):
        run_flagctl("rollout", "start", ROUTE, *FAST, "--reason", "move summary")
        assert eventually(lambda: status()["state"] in ("done", "rolled_back"), timeout=60, interval=0.5)
    final = status()
    assert (final["state"], final["percent"]) == ("rolled_back", 0)
    assert [event["action"] for event in final["history"]] == ["start", "rollback"], "within the first window"
    assert "parity" in final["reason"] and "body:/rating_average" in final["reason"]
    assert final["history"][-1]["gates"]["compared"] >= 20
    assert served_by(clean) == "legacy"
    audit = run_flagctl("audit", "--json")
    assert audit[-1]["actor"] == "rollout" and "body:/rating_average" in audit[-1]["reason"]


def test_a_candidate_that_errors_is_rolled_back_on_the_error_gate(clean: str, proxy: str):
    mode(proxy, "fail", every=2)
    with load(clean):
        run_flagctl("rollout", "start", ROUTE, *FAST, "--reason", "move summary")
        assert eventually(lambda: status()["state"] in ("done", "rolled_back"), timeout=60, interval=0.5)
    final = status()
    assert final["state"] == "rolled_back" and "errors: candidate failed" in final["reason"], final["reason"]


def test_a_person_moving_the_route_wins_and_pauses_the_rollout_until_resumed(clean: str):
    with load(clean, clients=2):
        run_flagctl("rollout", "start", ROUTE, "--steps", "1,100", "--every", "1h", "--min-samples", "20",
                    "--reason", "slow and careful")  # fmt: skip
        # Judged with both workers' traffic (shadows are spread over the hour-long window).
        assert eventually(lambda: status()["gates"].get("workers") == 2, timeout=30, interval=0.5)
        run_flagctl("route", ROUTE, "--to", "legacy", "--reason", "hands off tonight", "--actor", "carol")
        assert eventually(lambda: status()["state"] == "paused", timeout=15, interval=0.2)
        assert "carol set legacy (hands off tonight)" in status()["reason"]
        assert served_by(clean) == "legacy", "the person's override stays"
        run_flagctl("rollout", "resume", ROUTE, "--reason", "carry on", "--actor", "carol")
        assert status()["state"] == "running"
        run_flagctl("rollout", "abort", ROUTE, "--reason", "test over")
    assert status()["state"] == "aborted" and served_by(clean) == "legacy"


def test_a_restarted_gateway_resumes_the_rollout_from_the_store(stack: Stack, proxy: str, clean: str):
    """Its own gateway: stopped mid-rollout, then a new one on the same store carries on. Their store
    is a file of their own, so the module's gateway (on Redis) cannot be the one that finishes it."""
    store = stack.work / "rollout-restart-store"
    store.mkdir(exist_ok=True)
    files = {"OVERRIDES_FILE": str(store / "overrides.json"), "AUDIT_FILE": str(store / "audit.jsonl")}
    env = {**_env(stack, proxy), "REDIS_URL": "", **files}

    def flagctl_here(*args: str) -> Any:
        result = CliRunner().invoke(flagctl, list(args), env={**files, "REDIS_URL": "", "UNLEASH_URL": ""})
        assert result.exit_code == 0, result.output
        return json.loads(result.output) if "--json" in args else result.output

    def here() -> dict[str, Any]:
        document: dict[str, Any] = flagctl_here("rollout", "status", ROUTE, "--json")
        return document

    with ExitStack() as first:
        url, _ = _gateway(first, stack.work, "gw-rollout-restart-1", env, workers=1)
        with load(url, clients=2):
            flagctl_here("rollout", "start", ROUTE, "--steps", "1,50,100", "--every", "2s", "--min-samples",
                         "20", "--max-p99-ratio", "20", "--reason", "across a restart")  # fmt: skip
            assert eventually(lambda: here()["step"] >= 2, timeout=60, interval=0.3)
    mid = here()  # no gateway on this store now; the rollout's state is in its file
    assert mid["state"] == "running" and mid["step"] >= 2
    with ExitStack() as second:
        url, _ = _gateway(second, stack.work, "gw-rollout-restart-2", env, workers=1)
        with load(url, clients=2):
            assert eventually(lambda: here()["state"] in ("done", "rolled_back"), timeout=60, interval=0.5)
            decider = httpx.get(f"{url}/_gateway/admin/rollouts", headers=ADMIN).json()["decider"]
    final = here()
    assert final["state"] == "done", final["reason"]
    assert [event["action"] for event in final["history"]] == ["start", "advance", "advance", "done"]
    assert decider["leader"] in (decider["this_worker"], None), "the new gateway decided"


def test_bad_input_exits_2_and_writes_nothing(clean: str):
    runner = CliRunner()
    env = {"REDIS_URL": TEST_REDIS_URL, "UNLEASH_URL": ""}
    for args, message in [
        (["nope", *FAST], "must be a route id of the route table"),
        (["reviews.create", *FAST], "is a write route"),
        ([ROUTE, "--steps", "5,1", "--every", "1s"], "--steps must increase"),
        (
            [ROUTE, "--steps", "1,150", "--every", "1s"],
            "--steps must be 1 to 20 whole percentages from 0 to 100",
        ),
        ([ROUTE, "--steps", "1,x", "--every", "1s"], "--steps takes whole percentages"),
        ([ROUTE, "--steps", "1,100", "--every", "-5s"], "--every takes a duration"),
        ([ROUTE, "--steps", "1,100", "--every", "0s"], "--every must be a window of 1 s"),
        ([ROUTE, *FAST, "--min-parity", "120"], "--min-parity must be a percentage"),
    ]:
        result = runner.invoke(flagctl, ["rollout", "start", *args, "--reason", "x"], env=env)
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output, (args, result.output)
    assert run_flagctl("rollout", "status", "--json") == []
    assert run_flagctl("audit", "--json") == []


def test_the_admin_api_lists_rollouts_and_candidates_and_gateway_candidates_ranks_them(clean: str):
    for n in range(30):  # legacy endpoints no hot route matches
        httpx.get(f"{clean}/api/v1/items/{n + 1}")
    for n in range(10):
        httpx.get(f"{clean}/api/v1/reviews/items/{n + 1}/summary")
    body = {
        "route": ROUTE,
        "steps": [1, 100],
        "every_seconds": 3600,
        "reason": "from the API",
        "actor": "dave",
    }
    started = httpx.post(f"{clean}/_gateway/admin/rollouts", json=body, headers=ADMIN)
    assert started.status_code == 200, started.text
    listed = httpx.get(f"{clean}/_gateway/admin/rollouts", headers=ADMIN).json()
    assert [(r["route"], r["state"], r["started_by"]) for r in listed["rollouts"]] == [
        (ROUTE, "running", "dave")
    ]
    refused = httpx.post(
        f"{clean}/_gateway/admin/rollouts",
        json={"route": ROUTE, "steps": [1, 100], "every_seconds": 60, "reason": "again"},
        headers=ADMIN,
    )
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "conflict"
    invalid = httpx.post(
        f"{clean}/_gateway/admin/rollouts",
        json={"route": ROUTE, "steps": [50, 5], "every_seconds": -1},
        headers=ADMIN,
    )
    assert invalid.status_code == 400 and set(invalid.json()["error"]["fields"]) == {
        "steps",
        "every_seconds",
        "reason",
    }
    paused = httpx.post(
        f"{clean}/_gateway/admin/rollouts",
        json={"action": "pause", "route": ROUTE, "reason": "look"},
        headers=ADMIN,
    )
    assert paused.status_code == 200 and paused.json()["rollouts"][0]["state"] == "paused"
    httpx.post(
        f"{clean}/_gateway/admin/rollouts",
        json={"action": "abort", "route": "*", "reason": "done"},
        headers=ADMIN,
    )

    def ranked() -> dict[str, Any] | None:
        result = subprocess.run(
            [sys.executable, "-m", "gateway", "candidates", "--json", "--since", "15m", "--url", clean],
            env={**os.environ, "GATEWAY_ADMIN_TOKEN": ADMIN_TOKEN},
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert result.returncode == 0, result.stderr
        document: dict[str, Any] = json.loads(result.stdout)
        rows = {(row["method"], row["template"]): row for row in document["candidates"]}
        items = rows.get(("GET", "/api/v1/items/{id}"))
        return (
            document if items is not None and items["requests"] >= 30 and document["workers"] == 2 else None
        )

    assert eventually(lambda: ranked() is not None, timeout=20, interval=1), "every worker's figures"
    document = ranked()
    assert document is not None
    rows = {(row["method"], row["template"]): row for row in document["candidates"]}
    hot = rows[("GET", "/api/v1/reviews/items/{item_id}/summary")]
    assert hot["hot_route"] == ROUTE and hot["requests"] >= 10
    assert rows[("GET", "/api/v1/items/{id}")]["hot_route"] is None
    bad = subprocess.run(
        [sys.executable, "-m", "gateway", "candidates", "--since", "3h", "--url", clean],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert bad.returncode == 2 and "--since" in bad.stderr
