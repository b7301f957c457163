"""``make run`` as a supervisor: a killed server is restarted while the others keep serving; stop leaves
no process behind."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest

from flags import default_flags, route_ids
from flags.routes_file import SHIPPED_ROUTES_FILE
from scripts.run_stack import RestartPolicy, describe_exit, next_streak, restart_delay
from tests.support.servers import free_port
from tests.support.waiting import eventually

ROOT = Path(__file__).resolve().parents[2]
SECRET = "run-stack-identity-secret"
# Long enough that the requests made while reviews is down surely happen before its restart.
RESTART_DELAY = 3


def test_the_restart_delay_doubles_from_the_first_delay_up_to_the_cap():
    policy = RestartPolicy(first_delay=0.5, max_delay=10.0)
    assert [restart_delay(policy, streak) for streak in range(1, 8)] == [0.5, 1, 2, 4, 8, 10, 10]
    assert restart_delay(policy, 10_000) == 10


def test_a_server_that_stayed_up_a_while_starts_a_new_crash_series():
    policy = RestartPolicy(stable_after=30.0)
    assert next_streak(policy, 0, uptime=0.2) == 1
    assert next_streak(policy, 4, uptime=0.2) == 5
    assert next_streak(policy, 4, uptime=30.0) == 1


def test_an_exit_is_described_by_its_status_or_its_signal_name():
    assert describe_exit(0) == "status 0"
    assert describe_exit(3) == "status 3"
    assert describe_exit(-9) == "signal SIGKILL"
    assert describe_exit(-15) == "signal SIGTERM"


@dataclass(frozen=True, kw_only=True, slots=True)
class Running:
    process: subprocess.Popen[bytes]
    log: Path
    database: Path
    gateway: str
    reviews: str
    ports: dict[str, int]

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def pid(self, pattern: str) -> int:
        match = re.search(pattern, self.output())
        assert match, f"no line matching {pattern!r} in:\n{self.output()[-3000:]}"
        return int(match.group(1))


def _flags_on_candidate(path: Path) -> None:
    document = default_flags(route_ids(SHIPPED_ROUTES_FILE))
    for feature in document["features"]:
        feature["enabled"] = feature["name"].startswith(("route.reviews.", "route.catalog."))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document))


def _item_review_count(database: Path, item_id: int) -> int:
    return int(_query(database, "SELECT review_count FROM items_item WHERE id = ?", item_id)[0][0])


def _port_closed(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return True
    return False


def _gone(process: psutil.Process) -> bool:
    """Exited; a zombie counts (it is nobody's server, only waiting for PID 1 to reap it)."""
    try:
        return not process.is_running() or process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _tree(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Running]:
    ports = {
        name: free_port()
        for name in ("legacy", "reviews", "recommendations", "catalog", "payments", "pg-a", "pg-b", "gateway")
    }
    var = tmp_path / "var"
    _flags_on_candidate(var / "flags.json")
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "legacy_django.config.django.test",
        "VAR_DIR": str(var),
        "SEED_SCALE": "small",
        "IDENTITY_SECRET": SECRET,
        "LEGACY_URL": f"http://127.0.0.1:{ports['legacy']}",
        "REVIEWS_URL": f"http://127.0.0.1:{ports['reviews']}",
        "RECOMMENDATIONS_URL": f"http://127.0.0.1:{ports['recommendations']}",
        "CATALOG_URL": f"http://127.0.0.1:{ports['catalog']}",
        "PAYMENTS_URL": f"http://127.0.0.1:{ports['payments']}",
        "PAYMENTS_PROVIDERS": f"a=http://127.0.0.1:{ports['pg-a']},b=http://127.0.0.1:{ports['pg-b']}",
        "GATEWAY_PORT": str(ports["gateway"]),
        # Workers under every kind of master, so the test sees that none of them outlives it.
        "LEGACY_WORKERS": "1",
        "REVIEWS_WORKERS": "2",
        "GATEWAY_WORKERS": "2",
        "REDIS_URL": "",
        "UNLEASH_URL": "",
        "GATEWAY_ACCESS_LOG": "false",
        "LOG_LEVEL": "WARNING",
        "RUN_STACK_RESTART_DELAY": str(RESTART_DELAY),
    }
    env.pop("DATABASE_URL", None)
    env.pop("BROKER_URL", None)  # the embedded default: the relay applies events itself
    log = tmp_path / "run_stack.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, str(ROOT / "scripts" / "run_stack.py")],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    seen: list[psutil.Process] = []
    try:
        running = Running(
            process=process,
            log=log,
            database=var / "legacy.sqlite3",
            gateway=f"http://127.0.0.1:{ports['gateway']}",
            reviews=f"http://127.0.0.1:{ports['reviews']}",
            ports=ports,
        )
        up = eventually(lambda: "The stack is up" in running.output() or process.poll() is not None, 60, 0.1)
        assert up and process.poll() is None, running.output()[-3000:]
        seen += _tree(process.pid)
        yield running
    finally:
        if process.poll() is None:
            seen += _tree(process.pid)
            process.kill()
            process.wait()
        for leftover in seen:
            if not _gone(leftover):
                leftover.kill()


def _query(database: Path, sql: str, *args: object) -> list[tuple[int, ...]]:
    with contextlib.closing(sqlite3.connect(database)) as db:
        return db.execute(sql, args).fetchall()


def _review_count(database: Path) -> int:
    return _query(database, "SELECT COUNT(*) FROM reviews_review")[0][0]


def _unreviewed_item(database: Path, username: str) -> int:
    reviewed = _query(
        database,
        "SELECT r.item_id FROM reviews_review r JOIN users_user u ON u.id = r.user_id WHERE u.username = ?",
        username,
    )
    return min(set(_query(database, "SELECT id FROM items_item")) - set(reviewed))[0]


@pytest.fixture
def client(stack: Running) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.gateway, timeout=10) as client:
        yield client


def test_a_killed_service_is_restarted_while_the_gateway_keeps_answering(
    stack: Running, client: httpx.Client
):
    summary = "/api/v1/reviews/items/1/summary"
    assert client.get(summary).headers["x-served-by"] == "reviews"
    token = client.post("/api/v1/auth/token", json={"username": "demo1", "password": "demo-password"})
    auth = {"Authorization": f"Bearer {token.json()['access_token']}"}
    item, before = _unreviewed_item(stack.database, "demo1"), _review_count(stack.database)
    review = {"item_id": item, "rating": 4, "body": "written once, after the restart"}

    # Checkout through the whole stack: gateway → legacy → payments → a provider simulator.
    option = _query(stack.database, "SELECT id FROM items_itemoption WHERE stock >= 1 ORDER BY id")[0][0]
    order = client.post(
        "/api/v1/orders", json={"lines": [{"option_id": option, "quantity": 1}]}, headers=auth
    )
    paid = client.post(
        f"/api/v1/orders/{order.json()['id']}/payment", headers={**auth, "Idempotency-Key": "run-stack-1"}
    )
    assert paid.status_code == 201, paid.text
    assert (paid.json()["order"]["status"], paid.json()["payment"]["status"]) == ("paid", "approved")

    reviews_pid = stack.pid(r"started reviews \(pid (\d+)\)")
    old_reviews = _tree(reviews_pid)
    assert len(old_reviews) > 2, "the reviews master and its workers"
    os.kill(reviews_pid, signal.SIGKILL)
    exited = rf"reviews \(pid {reviews_pid}\) exited with signal SIGKILL; restart 1 in {RESTART_DELAY}s"
    assert eventually(lambda: re.search(exited, stack.output()) is not None, timeout=10), stack.output()
    # Its workers went with it: nothing answers on its port until the restart.
    assert eventually(lambda: all(_gone(p) for p in old_reviews) and _port_closed(stack.ports["reviews"]))

    fallback = client.get(summary)
    assert fallback.status_code == 200
    assert fallback.headers["x-served-by"] == "legacy"
    failed = client.post("/api/v1/reviews", json=review, headers=auth)
    assert failed.status_code in {502, 503}
    assert set(failed.json()["error"]) >= {"code", "message", "request_id"}
    assert "restarted reviews" not in stack.output(), "both requests were made while reviews was down"
    assert _review_count(stack.database) == before

    assert eventually(lambda: _healthy(f"{stack.reviews}/health"), timeout=10)
    new_pid = stack.pid(r"restarted reviews \(pid (\d+), restart 1\)")
    assert new_pid != reviews_pid
    assert eventually(lambda: client.get(summary).headers["x-served-by"] == "reviews", timeout=10)
    created = client.post("/api/v1/reviews", json=review, headers=auth)
    assert created.status_code == 201, created.text
    assert created.headers["x-served-by"] == "reviews"
    assert _review_count(stack.database) == before + 1
    # The catalog view follows the write: the embedded relay applied the review's event (ADR 0018).
    document = f"/api/v1/catalog/items/{item}"
    assert eventually(
        lambda: client.get(document).json()["review_count"] == _item_review_count(stack.database, item),
        timeout=10,
    )
    assert client.get(document).headers["x-served-by"] == "catalog"

    servers = {
        stack.pid(rf"started {name} \(pid (\d+)\)")
        for name in ("legacy", "recommendations", "catalog", "relay", "pg-a", "pg-b", "payments", "gateway")
    }
    everything = _tree(stack.process.pid)
    assert servers | {new_pid} <= {p.pid for p in everything}
    assert len(everything) >= 1 + 7 + 5, "run_stack, 7 servers, 1 gunicorn and 2 + 2 uvicorn workers"
    stack.process.send_signal(signal.SIGINT)
    assert stack.process.wait(timeout=30) == 0
    assert "SIGINT: stopping the stack" in stack.output()
    assert [p.pid for p in everything if not _gone(p)] == []
    assert [name for name, port in stack.ports.items() if not _port_closed(port)] == []
