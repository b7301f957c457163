"""flagctl on the file store: every command, its output for scripts, and its errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flags import route_ids
from flags.cli import app
from flags.routes_file import SHIPPED_ROUTES_FILE
from flags.settings import ensure_flags_file, load_flags_settings


@pytest.fixture
def run(tmp_path: Path):
    runner = CliRunner()
    env = {"VAR_DIR": str(tmp_path), "REDIS_URL": "", "UNLEASH_URL": "", "COLUMNS": "200"}
    ensure_flags_file(load_flags_settings(env))

    def invoke(*args: str):
        return runner.invoke(app, list(args), env=env)

    return invoke


def test_status_lists_every_hot_route_on_legacy(run):
    result = run("status", "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert len(rows) == len(route_ids(SHIPPED_ROUTES_FILE))
    assert {(r["backend"], r["percent"], r["source"]) for r in rows} == {("legacy", 0, "file")}


def test_route_with_percentage_then_status_and_audit(run):
    result = run(
        "route",
        "reviews.list",
        "--to",
        "candidate",
        "--percent",
        "25",
        "--reason",
        "canary",
        "--actor",
        "alice",
    )
    assert result.exit_code == 0, result.output
    assert "reviews.list: candidate 25%" in result.output
    rows = {r["route"]: r for r in json.loads(run("status", "--json").output)}
    assert (
        rows["reviews.list"]["backend"],
        rows["reviews.list"]["percent"],
        rows["reviews.list"]["source"],
    ) == ("split", 25, "override")
    assert rows["reviews.list"]["last_change"]["actor"] == "alice"
    (entry,) = json.loads(run("audit", "--json").output)
    assert (entry["route"], entry["actor"], entry["reason"], entry["before"]) == (
        "reviews.list",
        "alice",
        "canary",
        None,
    )
    assert entry["after"]["percent"] == 25


def test_flip_all_and_release_all(run):
    assert run("flip-all", "--to", "candidate", "--reason", "8 pm push", "--ttl", "2h").exit_code == 0
    rows = json.loads(run("status", "--json").output)
    assert {r["backend"] for r in rows} == {"candidate"}
    assert run("release", "--all", "--reason", "spike over").exit_code == 0
    assert {r["backend"] for r in json.loads(run("status", "--json").output)} == {"legacy"}
    entries = json.loads(run("audit", "--json", "--limit", "100").output)
    assert len(entries) == 2 * len(route_ids(SHIPPED_ROUTES_FILE))  # a flip and a release per route
    released = entries[-1]
    assert (
        released["action"] == "release"
        and released["before"]["backend"] == "candidate"
        and released["after"] is None
    )


def test_human_output_is_a_table(run):
    run("route", "reviews.mine", "--to", "candidate", "--reason", "try it")
    result = run("status")
    assert result.exit_code == 0
    assert "Hot routes" in result.output and "reviews.mine" in result.output and "override" in result.output
    assert "try it" in run("audit").output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("route", "nope", "--to", "candidate", "--reason", "x"), "unknown route"),
        (("route", "reviews.list", "--to", "sideways", "--reason", "x"), "--to must be candidate or legacy"),
        (("route", "reviews.list", "--to", "legacy", "--percent", "10", "--reason", "x"), "--percent"),
        (("route", "reviews.list", "--to", "candidate", "--reason", "  "), "--reason must say why"),
        (
            ("route", "reviews.list", "--to", "candidate", "--reason", "x", "--ttl", "soon"),
            "--ttl takes a duration",
        ),
        (("release", "--reason", "x"), "name one ROUTE or pass --all"),
        (("release", "reviews.list", "--reason", "x"), "nothing to release"),
    ],
)
def test_mistakes_exit_2_with_a_clear_message(run, args, message):
    result = run(*args)
    assert result.exit_code == 2
    assert message in result.output


def test_a_missing_reason_is_a_usage_error(run):
    assert run("route", "reviews.list", "--to", "candidate").exit_code == 2
