"""Overrides through the real Redis at 127.0.0.1:6379 (database 15): propagation across worker
processes, the audit trail through flagctl, and behaviour while Redis is unreachable."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from flags import route_ids
from flags.model import Override
from flags.overrides import AUDIT_STREAM, HASH_KEY, OverrideStoreError, RedisOverrideStore
from flags.routes_file import SHIPPED_ROUTES_FILE
from tests.support.override_worker import start_workers, stop_workers
from tests.support.redis_db import TEST_REDIS_URL, clean_redis
from tests.support.tcp_proxy import TcpProxy
from tests.support.waiting import eventually

ROUTES = len(route_ids(SHIPPED_ROUTES_FILE))  # flip-all overrides every route of the shipped table

REDIS_URL = TEST_REDIS_URL
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def redis_url() -> Iterator[str]:
    with clean_redis(HASH_KEY, AUDIT_STREAM):
        yield REDIS_URL


def override(route: str, backend: str = "candidate", **extra) -> Override:
    return Override(
        route=route,
        backend=backend,
        reason=extra.pop("reason", "test"),
        actor="tester",
        at=time.time(),
        **extra,
    )  # type: ignore[arg-type]


def test_a_change_reaches_another_store_and_is_audited(redis_url):
    writer, reader = RedisOverrideStore(redis_url), RedisOverrideStore(redis_url)
    reader.start()
    try:
        entries = writer.apply([("reviews.list", override("reviews.list"))], actor="alice", reason="spike")
        assert [(e.route, e.action, e.before, e.after["backend"]) for e in entries] == [
            ("reviews.list", "set", None, "candidate")
        ]
        assert eventually(lambda: "reviews.list" in reader.snapshot())
        writer.apply([("reviews.list", None)], actor="bob", reason="calm again")
        assert eventually(lambda: "reviews.list" not in reader.snapshot())
        trail = reader.audit()
        assert [(e.actor, e.reason, e.action) for e in trail] == [
            ("alice", "spike", "set"),
            ("bob", "calm again", "release"),
        ]
        assert (
            trail[1].before is not None
            and trail[1].before["backend"] == "candidate"
            and trail[1].after is None
        )
    finally:
        reader.stop()
        writer.stop()


def test_unreachable_redis_keeps_the_last_overrides_and_reports_it(redis_url):
    proxy = TcpProxy(("127.0.0.1", 6379))
    url = f"redis://127.0.0.1:{proxy.port}/15"
    writer = RedisOverrideStore(redis_url)
    writer.apply(
        [("reviews.summary", override("reviews.summary"))], actor="alice", reason="before the outage"
    )
    store = RedisOverrideStore(url)
    store.start()
    try:
        assert eventually(lambda: store.healthy() and "reviews.summary" in store.snapshot())
        proxy.cut()
        assert eventually(lambda: not store.healthy())
        assert "reviews.summary" in store.snapshot(), "last known overrides are kept"
        with pytest.raises(OverrideStoreError, match="not reachable"):
            store.apply([("reviews.list", override("reviews.list"))], actor="x", reason="y")
        writer.apply(
            [("reviews.detail", override("reviews.detail"))], actor="alice", reason="during the outage"
        )
        proxy.restore()
        assert eventually(lambda: store.healthy() and "reviews.detail" in store.snapshot(), timeout=10)
    finally:
        store.stop()
        writer.stop()
        proxy.close()


def test_flagctl_flip_all_reaches_every_worker_process_and_is_audited(redis_url, tmp_path):
    workers, lines = start_workers(3, redis_url)
    try:
        ready = {process.pid for process in workers}
        env = {**os.environ, "REDIS_URL": redis_url, "VAR_DIR": str(tmp_path)}
        flagctl = [sys.executable, "-m", "flags.cli"]
        result = subprocess.run(
            [*flagctl, "flip-all", "--to", "candidate", "--reason", "8 pm push", "--actor", "oncall@ops"],
            env=env,
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
        assert result.returncode == 0, result.stderr
        seen: set[int] = set()
        deadline = time.monotonic() + 10
        while seen != ready and time.monotonic() < deadline:
            line = lines.get(timeout=10)
            state = line.get("overrides", {})
            if len(state) == ROUTES and set(state.values()) == {"candidate"}:
                seen.add(line["pid"])
        assert seen == ready, "every worker process applied every route's override"

        audit = subprocess.run(
            [*flagctl, "audit", "--json"], env=env, capture_output=True, text=True, cwd=ROOT
        )
        assert audit.returncode == 0, audit.stderr
        entries = json.loads(audit.stdout)
        assert len(entries) == ROUTES
        assert {(e["actor"], e["reason"], e["before"], e["after"]["backend"]) for e in entries} == {
            ("oncall@ops", "8 pm push", None, "candidate")
        }
        assert all(abs(e["at"] - time.time()) < 60 for e in entries)
    finally:
        stop_workers(workers)
