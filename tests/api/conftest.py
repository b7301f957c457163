"""A stack of its own for the schemathesis runs (they write: reviews, views, orders, payments): one seeded
database, the monolith (paying through the payments service and one provider simulator), both
services, and two gateways, one sending every hot route to legacy and
one to its candidate (a flags file with every route's toggle on)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from flags import default_flags, route_ids
from flags.routes_file import SHIPPED_ROUTES_FILE
from tests.support.payments import payments_env, payments_service, simulator
from tests.support.servers import free_port, legacy_env, legacy_server, seeded_copies, serve, service_server

SECRET = "api-fuzz-identity-secret"
BACKENDS = ("legacy", "candidate")


@dataclass(frozen=True)
class ApiStack:
    legacy: str
    services: dict[str, str]  # reviews, recommendations
    gateways: dict[str, str]  # legacy: every hot route on legacy; candidate: every one on its service

    def token(self, username: str = "demo1") -> str:
        response = httpx.post(
            f"{self.gateways['legacy']}/api/v1/auth/token",
            json={"username": username, "password": "demo-password"},
        )
        assert response.status_code == 200, response.text
        return str(response.json()["access_token"])


def _gateway(stack: ExitStack, work: Path, backend: str, backends: dict[str, str]) -> str:
    var = work / f"gw-{backend}"
    var.mkdir()
    flags = default_flags(route_ids(SHIPPED_ROUTES_FILE))
    for feature in flags["features"]:
        feature["enabled"] = backend == "candidate"
    (var / "flags.json").write_text(json.dumps(flags))
    port = free_port()
    env = {
        **os.environ,
        **backends,
        "GATEWAY_PORT": str(port),
        "GATEWAY_WORKERS": "1",
        "GATEWAY_ACCESS_LOG": "false",
        "IDENTITY_SECRET": SECRET,
        "VAR_DIR": str(var),
        "FLAGS_FILE": str(var / "flags.json"),
        "REDIS_URL": "",
        "UNLEASH_URL": "",
    }
    return stack.enter_context(
        serve([sys.executable, "-m", "gateway"], env, port, work / f"gw-{backend}.log")
    )


@pytest.fixture(scope="session")
def api_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiStack]:
    work = tmp_path_factory.mktemp("api-stack")
    with ExitStack() as stack, seeded_copies(work, ("shared",), None, SECRET) as urls:
        # Checkout pays through the payments service and a provider simulator (orders.pay).
        provider = stack.enter_context(simulator("a", work))
        payments_env_ = payments_env(urls["shared"], f"a={provider.url}", SECRET)
        payments = stack.enter_context(payments_service(payments_env_, work / "payments.log"))
        env = {**legacy_env(work, urls["shared"], SECRET), "PAYMENTS_URL": payments}
        legacy = stack.enter_context(legacy_server(env, work / "legacy.log"))
        services = {
            name: stack.enter_context(service_server(name, env, work / f"{name}.log"))
            for name in ("reviews", "recommendations")
        }
        backends = {
            "LEGACY_URL": legacy,
            "REVIEWS_URL": services["reviews"],
            "RECOMMENDATIONS_URL": services["recommendations"],
        }
        gateways = {backend: _gateway(stack, work, backend, backends) for backend in BACKENDS}
        yield ApiStack(legacy=legacy, services=services, gateways=gateways)
