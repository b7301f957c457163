"""Real processes for the gateway tests: the monolith (gunicorn), both services (uvicorn), a recording
backend, and gateways (uvicorn, 2 workers) configured by the environment as in production."""

from __future__ import annotations

import json
import os
import socket
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from flags import default_flags, route_ids
from flags.routes_file import SHIPPED_ROUTES_FILE
from tests.support.servers import (
    free_port,
    legacy_env,
    legacy_server,
    recorder_server,
    seeded_copies,
    serve,
    service_server,
)

SECRET = "gateway-test-identity-secret"
ADMIN_TOKEN = "gateway-test-admin-token"


@dataclass
class Stack:
    work: Path
    database: Path
    legacy: str
    reviews: str
    recommendations: str
    recorder: str
    recorder_log: Path
    gateway: str  # in front of the real backends, 2 workers
    recording_gateway: str  # every cluster is the recorder; JWKS from the real monolith
    dead_candidate_gateway: str  # reviews service unreachable, reviews routes flagged on
    gateway_var: Path
    shadow_gateway: str  # real backends; reviews.summary and reviews.create shadowed, summary captured
    capture_file: Path
    stalled_shadow_gateway: str  # shadows go to a candidate that accepts connections and never answers

    def token(self, username: str = "demo1") -> str:
        response = httpx.post(
            f"{self.gateway}/api/v1/auth/token", json={"username": username, "password": "demo-password"}
        )
        assert response.status_code == 200, response.text
        return str(response.json()["access_token"])

    def recorded(self) -> list[dict]:
        if not self.recorder_log.exists():
            return []
        return [json.loads(line) for line in self.recorder_log.read_text().splitlines()]


def _flags_file(path: Path, enabled_prefix: str | None) -> None:
    document = default_flags(route_ids(SHIPPED_ROUTES_FILE))
    for feature in document["features"]:
        feature["enabled"] = enabled_prefix is not None and feature["name"].startswith(enabled_prefix)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document))


def _gateway(
    stack: ExitStack, work: Path, name: str, env: dict[str, str], workers: int = 2
) -> tuple[str, Path]:
    var = work / name
    var.mkdir()
    port = free_port()
    env = {
        **os.environ,
        "GATEWAY_PORT": str(port),
        "GATEWAY_WORKERS": str(workers),
        "IDENTITY_SECRET": SECRET,
        "GATEWAY_ADMIN_TOKEN": ADMIN_TOKEN,
        "VAR_DIR": str(var),
        "REDIS_URL": "",
        "UNLEASH_URL": "",
        **env,
    }
    if "FLAGS_FILE" not in env:
        _flags_file(var / "flags.json", None)
    url = stack.enter_context(serve([sys.executable, "-m", "gateway"], env, port, work / f"{name}.log"))
    return url, var


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    work = tmp_path_factory.mktemp("gateway-stack")
    with ExitStack() as stack, seeded_copies(work, ("shared",), None, SECRET) as urls:
        database_url = urls["shared"]
        env = legacy_env(work, database_url, SECRET)
        legacy = stack.enter_context(legacy_server(env, work / "legacy.log"))
        services = {
            name: stack.enter_context(service_server(name, env, work / f"{name}.log"))
            for name in ("reviews", "recommendations")
        }
        recorder_log = work / "recorded.jsonl"
        recorder = stack.enter_context(recorder_server(recorder_log, work / "recorder.log"))
        backends = {
            "LEGACY_URL": legacy,
            "REVIEWS_URL": services["reviews"],
            "RECOMMENDATIONS_URL": services["recommendations"],
        }
        gateway, gateway_var = _gateway(stack, work, "gw-main", backends)
        # One request at a time to the recorder: the bulkhead test needs a full cluster.
        routes = (Path(__file__).parents[2] / "gateway" / "routes.toml").read_text()
        routes_file = work / "recording-routes.toml"
        routes_file.write_text(routes.replace("max_in_flight = 512", "max_in_flight = 1", 1))
        recording, _ = _gateway(
            stack,
            work,
            "gw-recording",
            {
                "LEGACY_URL": recorder,
                "REVIEWS_URL": recorder,
                "RECOMMENDATIONS_URL": recorder,
                "JWT_JWKS_URL": f"{legacy}/.well-known/jwks.json",
                "ROUTES_FILE": str(routes_file),
            },
            workers=1,
        )
        dead_var = work / "gw-dead-flags"
        _flags_file(dead_var / "flags.json", "route.reviews.")
        dead, _ = _gateway(
            stack,
            work,
            "gw-dead",
            {
                **backends,
                "REVIEWS_URL": f"http://127.0.0.1:{free_port()}",
                "FLAGS_FILE": str(dead_var / "flags.json"),
            },
            workers=1,
        )
        shadowed = routes
        for route_id in ("reviews.summary", "reviews.create", "reviews.list"):
            marker = f'id = "{route_id}"\n'
            shadowed = shadowed.replace(
                marker, marker + "shadow = {sample_rate = 1.0}\ncapture = {sample_rate = 1.0}\n"
            )
        shadow_routes = work / "shadow-routes.toml"
        shadow_routes.write_text(shadowed)
        capture_file = work / "capture.jsonl"
        shadow, _ = _gateway(
            stack,
            work,
            "gw-shadow",
            {**backends, "ROUTES_FILE": str(shadow_routes), "GATEWAY_CAPTURE_FILE": str(capture_file)},
            workers=1,
        )
        stalled_socket = stack.enter_context(socket.create_server(("127.0.0.1", 0), backlog=1024))
        stalled, _ = _gateway(
            stack,
            work,
            "gw-stalled-shadow",
            {
                **backends,
                "ROUTES_FILE": str(shadow_routes),
                "REVIEWS_URL": f"http://127.0.0.1:{stalled_socket.getsockname()[1]}",
            },
            workers=1,
        )
        yield Stack(
            work=work,
            database=Path(database_url.removeprefix("sqlite:///")),
            legacy=legacy,
            reviews=services["reviews"],
            recommendations=services["recommendations"],
            recorder=recorder,
            recorder_log=recorder_log,
            gateway=gateway,
            recording_gateway=recording,
            dead_candidate_gateway=dead,
            gateway_var=gateway_var,
            shadow_gateway=shadow,
            capture_file=capture_file,
            stalled_shadow_gateway=stalled,
        )


@pytest.fixture
def clean_recorder(stack: Stack) -> Stack:
    if stack.recorder_log.exists():
        stack.recorder_log.unlink()
    return stack
