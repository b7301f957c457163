"""A real Unleash server (npm unleash-server 8.2.0) on the machine's PostgreSQL, for tests and benchmarks.

``make node-deps`` installs it under .cache/node; ``unleash_server()`` creates a fresh database,
starts the server on a free port with an admin and a backend API token, and drops it all after.
``stop()`` and ``start()`` take the server down and bring it back on the same port and database.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from tests.support.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
NODE_DIR = ROOT / ".cache" / "node"
ADMIN_TOKEN = "*:*.test-admin-token"
BACKEND_TOKEN = "default:development.test-backend-token"
POSTGRES = "postgresql://postgres@127.0.0.1:5432"


def installed() -> bool:
    return (NODE_DIR / "node_modules" / "unleash-server" / "package.json").exists() and shutil.which(
        "node"
    ) is not None


@dataclass
class UnleashServer:
    url: str
    process: subprocess.Popen[bytes]
    log: Path
    env: dict[str, str] = field(default_factory=dict)
    admin_token: str = ADMIN_TOKEN
    backend_token: str = BACKEND_TOKEN
    created: set[str] = field(default_factory=set)

    def admin(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(  # noqa: S310 - loopback test server
            f"{self.url}/api/admin{path}",
            data=data,
            method=method,
            headers={"Authorization": self.admin_token, "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            raw = response.read()
        return json.loads(raw) if raw else None

    def rollout(self, flag: str, percent: int, *, enabled: bool = True) -> None:
        """Create the toggle if needed and give it one flexible rollout of ``percent`` in development."""
        base = f"/projects/default/features/{flag}"
        if flag not in self.created:
            self.admin("POST", "/projects/default/features", {"name": flag, "type": "release"})
            self.created.add(flag)
        env = f"{base}/environments/development"
        for strategy in self.admin("GET", f"{env}/strategies"):
            self.admin("DELETE", f"{env}/strategies/{strategy['id']}")
        strategy = {
            "name": "flexibleRollout",
            "parameters": {"rollout": str(percent), "stickiness": "default", "groupId": flag},
            "constraints": [],
        }
        self.admin("POST", f"{env}/strategies", strategy)
        self.admin("POST", f"{env}/{'on' if enabled else 'off'}")

    def start(self) -> None:
        """Start it again after ``stop()`` (same port, same database); returns once it answers."""
        self.process = _launch(self.env, self.log)
        _wait_healthy(self)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _launch(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(["node", "server.mjs"], cwd=NODE_DIR, env=env, stdout=out, stderr=out)  # noqa: S607


def _wait_healthy(server: UnleashServer) -> None:
    deadline = time.monotonic() + 90
    while not _healthy(server.url):
        if server.process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"Unleash did not start:\n{server.log.read_text()[-3000:]}")
        time.sleep(0.2)


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=1) as response:  # noqa: S310
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


@contextlib.contextmanager
def unleash_server(work_dir: Path) -> Iterator[UnleashServer]:
    database = f"unleash_test_{os.getpid()}"
    with psycopg.connect(f"{POSTGRES}/postgres", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{database}"')
    shutil.copyfile(ROOT / "tests" / "support" / "unleash_server.mjs", NODE_DIR / "server.mjs")
    port = free_port()
    log = work_dir / "unleash.log"
    env = {
        **os.environ,
        "UNLEASH_PORT": str(port),
        "UNLEASH_DATABASE_URL": f"{POSTGRES}/{database}",
        "INIT_ADMIN_API_TOKENS": ADMIN_TOKEN,
        "INIT_BACKEND_API_TOKENS": BACKEND_TOKEN,
    }
    server = UnleashServer(url=f"http://127.0.0.1:{port}", process=_launch(env, log), log=log, env=env)
    try:
        _wait_healthy(server)
        yield server
    finally:
        server.stop()
        with psycopg.connect(f"{POSTGRES}/postgres", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
