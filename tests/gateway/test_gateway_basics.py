"""Through the gateway to the real backends: routing by flag, X-Served-By, errors, health."""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
from urllib.parse import urlsplit

import httpx
import pytest

from tests.gateway.conftest import ADMIN_TOKEN, Stack
from tests.support.waiting import eventually


def test_hot_route_goes_to_legacy_by_default_and_answers_the_same(stack: Stack):
    direct = httpx.get(f"{stack.legacy}/api/v1/reviews/items/1/summary")
    through = httpx.get(f"{stack.gateway}/api/v1/reviews/items/1/summary")
    assert through.status_code == 200
    assert through.headers["x-served-by"] == "legacy"
    assert through.content == direct.content
    assert len(through.headers["x-request-id"]) == 32


def test_request_id_is_kept_when_well_formed(stack: Stack):
    response = httpx.get(f"{stack.gateway}/api/v1/items/1", headers={"X-Request-Id": "app-123.abc"})
    assert response.headers["x-request-id"] == "app-123.abc"
    response = httpx.get(f"{stack.gateway}/api/v1/items/1", headers={"X-Request-Id": "bad id"})
    assert response.headers["x-request-id"] != "bad id"


def test_signed_in_requests_reach_the_backend_as_the_user(stack: Stack):
    token = stack.token("demo2")
    me = httpx.get(f"{stack.gateway}/api/v1/users/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200
    assert me.json()["username"] == "demo2"


def _served_by(url: str, headers: dict[str, str] | None = None, count: int = 30) -> set[str]:
    """Who answered ``count`` requests, each on a new connection so both uvicorn workers answer some."""
    return {httpx.get(url, headers=headers).headers["x-served-by"] for _ in range(count)}


def test_flagctl_flip_reaches_both_workers(stack: Stack):
    # How fast it gets there is measured by bench/override_propagation.py, not asserted here.
    env = {"VAR_DIR": str(stack.gateway_var), "REDIS_URL": "", "UNLEASH_URL": "", "PATH": "/usr/bin:/bin"}
    flagctl = [sys.executable, "-m", "flags.cli"]
    token = stack.token("demo1")
    headers = {"Authorization": f"Bearer {token}"}
    url = f"{stack.gateway}/api/v1/reviews/items/1?size=2"
    try:
        result = subprocess.run(
            [*flagctl, "route", "reviews.list", "--to", "candidate", "--reason", "test flip"],
            env=env,
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, result.stderr
        assert eventually(lambda: _served_by(url, headers) == {"reviews"})
        result = subprocess.run(
            [*flagctl, "route", "reviews.list", "--to", "legacy", "--reason", "back"],
            env=env,
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, result.stderr
        assert eventually(lambda: _served_by(url, headers) == {"legacy"})
    finally:
        subprocess.run([*flagctl, "release", "--all", "--reason", "test over"], env=env, capture_output=True)


@pytest.mark.parametrize(
    "raw_path",
    [
        "/api/v1/reviews/items/../../users/me",
        "/api/v1/reviews/items/%2e%2e/%2E%2E/users/me",
        "/api/v1//reviews/items/1",
        "/api/v1/reviews/items/1%2fsummary",
        "/api/v1/reviews/items/1%5Csummary",
        "/api/v1/reviews/./items/1",
    ],
)
def test_path_tricks_are_refused_before_any_backend(stack: Stack, raw_path: str):
    parts = urlsplit(stack.gateway)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)
    connection.request("GET", raw_path)
    response = connection.getresponse()
    body = json.loads(response.read())
    connection.close()
    assert response.status == 400
    assert body["error"]["code"] == "bad_request"
    assert response.getheader("x-served-by") == "gateway"


def test_case_tricks_do_not_match_a_hot_route(stack: Stack):
    response = httpx.get(f"{stack.gateway}/API/V1/REVIEWS/ITEMS/1")
    assert response.headers["x-served-by"] == "legacy"
    assert response.status_code == 404


def test_oversized_body_is_413_at_the_gateway(stack: Stack):
    response = httpx.post(
        f"{stack.gateway}/api/v1/reviews",
        content=b"x" * (1024 * 1024 + 1),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {stack.token()}"},
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


def test_health_ready_metrics_and_admin(stack: Stack):
    assert httpx.get(f"{stack.gateway}/_gateway/health").json() == {"status": "ok"}
    ready = httpx.get(f"{stack.gateway}/_gateway/ready")
    assert ready.status_code == 200, ready.text
    metrics = httpx.get(f"{stack.gateway}/_gateway/metrics").text
    assert "gateway_requests_total" in metrics

    def nothing_in_flight() -> bool:
        # Summed over both workers; each refreshes its figure every second.
        text = httpx.get(f"{stack.gateway}/_gateway/metrics").text
        return [line for line in text.splitlines() if line.startswith("gateway_requests_in_flight ")] == [
            "gateway_requests_in_flight 0.0"
        ]

    assert eventually(nothing_in_flight, timeout=5), "nothing in flight between requests"
    assert httpx.get(f"{stack.gateway}/_gateway/admin/routes").status_code == 401
    routes = httpx.get(
        f"{stack.gateway}/_gateway/admin/routes", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    )
    assert routes.status_code == 200
    assert {row["route"] for row in routes.json()["routes"]} >= {"reviews.list", "recommendations.home"}


def test_admin_api_moves_a_route_into_the_same_audit_trail_as_flagctl(stack: Stack):
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    base = f"{stack.gateway}/_gateway/admin"
    bad = httpx.post(f"{base}/overrides", json={"route": "nope", "backend": "sideways"}, headers=admin)
    assert bad.status_code == 400
    assert set(bad.json()["error"]["fields"]) == {"route", "backend", "reason"}
    moved = httpx.post(
        f"{base}/overrides",
        json={
            "route": "reviews.summary",
            "backend": "candidate",
            "reason": "admin api test",
            "actor": "console",
        },
        headers=admin,
    )
    assert moved.status_code == 200, moved.text
    try:
        summary = f"{stack.gateway}/api/v1/reviews/items/1/summary"
        assert eventually(lambda: _served_by(summary) == {"reviews"})
        rows = {row["route"]: row for row in httpx.get(f"{base}/routes", headers=admin).json()["routes"]}
        assert (rows["reviews.summary"]["backend"], rows["reviews.summary"]["source"]) == (
            "candidate",
            "override",
        )
    finally:
        released = httpx.delete(
            f"{base}/overrides", params={"route": "reviews.summary", "reason": "done"}, headers=admin
        )
        assert released.status_code == 200
    env = {"VAR_DIR": str(stack.gateway_var), "REDIS_URL": "", "UNLEASH_URL": "", "PATH": "/usr/bin:/bin"}
    audit = subprocess.run(
        [sys.executable, "-m", "flags.cli", "audit", "--json", "--limit", "500"],
        env=env,
        capture_output=True,
        text=True,
    )
    entries = [e for e in json.loads(audit.stdout) if e["route"] == "reviews.summary"]
    assert [(e["actor"], e["reason"], e["action"]) for e in entries[-2:]] == [
        ("console", "admin api test", "set"),
        ("admin-api", "done", "release"),
    ]
