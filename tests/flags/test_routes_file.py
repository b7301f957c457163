"""The route table is the one list of hot routes: flagctl and the default flags read it, nothing else lists
them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flags import EvaluationContext, flag_key
from flags.cli import app
from flags.routes_file import SHIPPED_ROUTES_FILE, RoutesFileError, route_ids
from flags.settings import build_flags, ensure_flags_file, load_flags_settings

NEW_ROUTE = """
[[routes]]
id = "reviews.stats"
methods = ["GET", "HEAD"]
path = "/api/v1/reviews/stats"
candidate = "reviews"
auth = "none"
"""


def table_with_a_new_route(tmp_path: Path) -> Path:
    path = tmp_path / "routes.toml"
    path.write_text(SHIPPED_ROUTES_FILE.read_text(encoding="utf-8") + NEW_ROUTE, encoding="utf-8")
    return path


def env_for(tmp_path: Path, routes: Path | None = None) -> dict[str, str]:
    env = {"VAR_DIR": str(tmp_path), "REDIS_URL": "", "UNLEASH_URL": "", "COLUMNS": "200"}
    return env if routes is None else {**env, "ROUTES_FILE": str(routes)}


def test_the_shipped_table_lists_the_hot_routes_in_order():
    assert route_ids(SHIPPED_ROUTES_FILE) == (
        "reviews.list",
        "reviews.summary",
        "reviews.detail",
        "reviews.create",
        "reviews.helpful",
        "reviews.delete",
        "reviews.mine",
        "recommendations.home",
        "recommendations.similar",
        "recommendations.recent",
        "catalog.item",
        "catalog.items",
    )


def test_default_flags_turn_every_route_of_the_table_off(tmp_path):
    settings = load_flags_settings(env_for(tmp_path))
    assert settings.routes_file == SHIPPED_ROUTES_FILE
    ensure_flags_file(settings)
    document = json.loads(settings.flags_file.read_text())
    assert [feature["name"] for feature in document["features"]] == [
        flag_key(route_id) for route_id in route_ids(SHIPPED_ROUTES_FILE)
    ]
    assert not any(feature["enabled"] for feature in document["features"])
    flags = build_flags(settings)  # the file provider reads the file when built
    decisions = {flags.decide(r, EvaluationContext(user_id="7")) for r in route_ids(SHIPPED_ROUTES_FILE)}
    assert {(d.backend, d.reason, d.source) for d in decisions} == {("legacy", "disabled", "file")}


def test_an_existing_flags_file_is_left_alone(tmp_path):
    settings = load_flags_settings(env_for(tmp_path))
    settings.flags_file.write_text('{"version": 1, "features": []}')
    ensure_flags_file(settings)
    assert json.loads(settings.flags_file.read_text()) == {"version": 1, "features": []}


def test_a_route_added_to_the_table_is_known_to_flagctl_and_the_default_flags(tmp_path):
    routes = table_with_a_new_route(tmp_path)
    env = env_for(tmp_path, routes)
    settings = load_flags_settings(env)
    ensure_flags_file(settings)
    features = json.loads(settings.flags_file.read_text())["features"]
    assert [f["name"] for f in features][-1] == "route.reviews.stats"
    assert features[-1]["enabled"] is False

    runner = CliRunner()
    status = runner.invoke(app, ["status", "--json"], env=env)
    assert status.exit_code == 0, status.output
    rows = {row["route"]: row for row in json.loads(status.output)}
    assert len(rows) == len(route_ids(SHIPPED_ROUTES_FILE)) + 1
    assert (rows["reviews.stats"]["backend"], rows["reviews.stats"]["source"]) == ("legacy", "file")
    moved = runner.invoke(
        app, ["route", "reviews.stats", "--to", "candidate", "--reason", "new route"], env=env
    )
    assert moved.exit_code == 0, moved.output
    flip = runner.invoke(app, ["flip-all", "--to", "candidate", "--reason", "spike", "--json"], env=env)
    assert "reviews.stats" in {entry["route"] for entry in json.loads(flip.output)}

    # The same command without the new table does not know the route.
    shipped = env_for(tmp_path / "shipped")
    unknown = runner.invoke(
        app, ["route", "reviews.stats", "--to", "candidate", "--reason", "x"], env=shipped
    )
    assert unknown.exit_code == 2
    assert "unknown route 'reviews.stats'" in unknown.output


def test_an_unreadable_table_is_a_clear_error(tmp_path):
    with pytest.raises(RoutesFileError, match=r"missing\.toml"):
        route_ids(tmp_path / "missing.toml")
    no_id = tmp_path / "no-id.toml"
    no_id.write_text('[[routes]]\npath = "/x"\n')
    with pytest.raises(RoutesFileError, match="needs an id"):
        route_ids(no_id)
    result = CliRunner().invoke(app, ["status"], env=env_for(tmp_path, tmp_path / "missing.toml"))
    assert result.exit_code == 2
    assert "route table" in result.output and "missing.toml" in result.output
