"""The payments service and payment-provider simulators as real processes, and a client for both."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from services.payments.__main__ import reconcile as run_reconcile
from tests.support.servers import free_port, serve
from tests.support.signing import signed

PAYMENTS = "/api/v1/payments"
# One keep-alive client for every call the tests make (a new connection per call is slow on a busy box).
HTTP = httpx.Client(timeout=30)
atexit.register(HTTP.close)


@dataclass(frozen=True)
class Simulator:
    """A running provider simulator."""

    name: str
    url: str

    def faults(self, mode: str = "ok", **options: Any) -> None:
        response = HTTP.post(f"{self.url}/_sim/faults", json={"mode": mode, **options})
        assert response.status_code == 200, response.text

    def ledger(self) -> list[dict[str, Any]]:
        return list(HTTP.get(f"{self.url}/_sim/ledger").json()["charges"])

    def charged(self, reference: str) -> int:
        """Live charges of ``reference`` here (approved, not refunded): 0 or 1."""
        return sum(c["reference"] == reference and c["status"] == "approved" for c in self.ledger())


@contextlib.contextmanager
def simulator(name: str, work: Path, *extra: str) -> Iterator[Simulator]:
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "services.payments.simulator",
        "--name",
        name,
        "--port",
        str(port),
        "--ledger",
        str(work / f"pg-{name}.sqlite3"),
        *extra,
    ]
    with serve(command, os.environ, port, work / f"pg-{name}.log") as url:
        yield Simulator(name, url)


def payments_env(database_url: str, providers: str, secret: str, **settings: str) -> dict[str, str]:
    """The payments service's environment: ``settings`` are PAYMENTS_* names without the prefix."""
    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "IDENTITY_SECRET": secret,
        "PAYMENTS_PROVIDERS": providers,
        "PAYMENTS_RECONCILE_SECONDS": "0",
        **{f"PAYMENTS_{name.upper()}": value for name, value in settings.items()},
    }


@contextlib.contextmanager
def payments_service(env: Mapping[str, str], log: Path) -> Iterator[str]:
    port = free_port()
    service_env = {**env, "PAYMENTS_URL": f"http://127.0.0.1:{port}"}
    with serve([sys.executable, "-m", "services.payments"], service_env, port, log) as url:
        yield url


def reconcile(env: Mapping[str, str], *, cli: bool = False) -> tuple[int, dict[str, Any]]:
    """One reconciliation round (with ``cli``: ``python -m services.payments reconcile``, else the same
    function in this process): its exit status and summary."""
    if not cli:
        summary = asyncio.run(run_reconcile(env)).as_dict()
        return (1 if summary["duplicates_refunded"] or summary["refund_failures"] else 0), summary
    result = subprocess.run(
        [sys.executable, "-m", "services.payments", "reconcile"],
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.stdout, result.stderr
    return result.returncode, json.loads(result.stdout.strip().splitlines()[-1])


class PaymentsClient:
    """Calls the payments service as the monolith does: signed, with the ``payments`` scope."""

    def __init__(self, url: str, secret: str) -> None:
        self.url = url
        self.secret = secret

    def pay(
        self,
        body: dict[str, Any] | bytes,
        key: str | None,
        *,
        scopes: str = "payments",
        content_type: str = "application/json",
        sign: bool = True,
    ) -> httpx.Response:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers = {"Content-Type": content_type}
        if key is not None:
            headers["Idempotency-Key"] = key
        if sign:
            headers.update(signed(self.secret, "POST", PAYMENTS, user_id="1", scopes=scopes, body=raw))
        return HTTP.post(f"{self.url}{PAYMENTS}", content=raw, headers=headers)

    def get(self, payment_id: str) -> httpx.Response:
        path = f"{PAYMENTS}/{payment_id}"
        headers = signed(self.secret, "GET", path, user_id="1", scopes="payments")
        return HTTP.get(f"{self.url}{path}", headers=headers)

    def breakers(self) -> dict[str, str]:
        providers = HTTP.get(f"{self.url}/_payments/providers").json()["providers"]
        return {p["name"]: p["breaker"] for p in providers}
