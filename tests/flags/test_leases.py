"""Leases and conditional writes in both override stores: one holder at a time for a name (the
autopilot's decider), and ``apply(expected=…)`` that never overwrites a change made meanwhile.
Redis tests use the real Redis at 127.0.0.1:6379, database 15."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from flags.model import Override
from flags.overrides import (
    AUDIT_STREAM,
    HASH_KEY,
    LEASE_PREFIX,
    FileOverrideStore,
    OverrideConflict,
    OverrideStore,
    RedisOverrideStore,
)
from tests.support.redis_db import TEST_REDIS_URL, clean_redis
from tests.support.waiting import eventually

REDIS_URL = TEST_REDIS_URL
LEASE = "lease-test"


@pytest.fixture
def redis_url() -> Iterator[str]:
    with clean_redis(HASH_KEY, AUDIT_STREAM, LEASE_PREFIX + LEASE):
        yield REDIS_URL


@pytest.fixture(params=["file", "redis"])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[OverrideStore, OverrideStore]]:
    """Two stores on the same backing store, as two gateway processes would have them."""
    if request.param == "file":
        paths = (tmp_path / "overrides.json", tmp_path / "audit.jsonl")
        yield FileOverrideStore(*paths), FileOverrideStore(*paths)
        return
    url = request.getfixturevalue("redis_url")
    first, second = RedisOverrideStore(url), RedisOverrideStore(url)
    yield first, second
    first.stop()
    second.stop()


def human(route: str, backend: str = "legacy") -> Override:
    return Override(route=route, backend=backend, reason="hold it", actor="alice", at=time.time())  # type: ignore[arg-type]


def test_one_holder_at_a_time_renewed_by_its_owner_and_free_once_released(stores):
    first, second = stores
    assert first.hold_lease(LEASE, "a", 30) == "a"
    assert second.hold_lease(LEASE, "b", 30) == "a", "held by a: b is told who holds it"
    assert first.hold_lease(LEASE, "a", 30) == "a", "the owner renews"
    second.release_lease(LEASE, "b")  # not b's: nothing happens
    assert second.hold_lease(LEASE, "b", 30) == "a"
    first.release_lease(LEASE, "a")
    assert second.hold_lease(LEASE, "b", 30) == "b"
    assert first.hold_lease(LEASE, "a", 30) == "b"


def test_a_lease_nobody_renews_expires(stores):
    first, second = stores
    assert first.hold_lease(LEASE, "a", 0.2) == "a"
    assert second.hold_lease(LEASE, "b", 30) == "a"
    # a stops renewing (a dead process): b gets it once the lease has run out.
    assert eventually(lambda: second.hold_lease(LEASE, "b", 30) == "b", timeout=5)
    assert first.hold_lease(LEASE, "a", 30) == "b"


def test_a_write_expecting_what_is_no_longer_there_writes_nothing(stores):
    first, second = stores
    first.apply([("reviews.list", human("reviews.list"))], actor="alice", reason="hold it")
    seen_by_alice = first.snapshot()["reviews.list"]
    move = Override.create(route="reviews.list", backend="candidate", reason="spike", actor="autopilot")
    # The decider read "no override" before alice wrote hers: its write must not replace hers.
    with pytest.raises(OverrideConflict):
        second.apply(
            [("reviews.list", move)], actor="autopilot", reason="spike", expected={"reviews.list": None}
        )
    assert first.audit()[-1].actor == "alice" and len(first.audit()) == 1
    # Expecting exactly what is stored: written.
    second.apply(
        [("reviews.list", move)], actor="autopilot", reason="spike", expected={"reviews.list": seen_by_alice}
    )
    assert [entry.actor for entry in first.audit()] == ["alice", "autopilot"]


def test_the_file_lease_is_a_small_file_beside_the_overrides(tmp_path: Path):
    store = FileOverrideStore(tmp_path / "overrides.json", tmp_path / "audit.jsonl")
    store.hold_lease("autopilot", "host/1/abc", 30)
    assert (tmp_path / "overrides.autopilot.lease").exists()
    (tmp_path / "overrides.autopilot.lease").write_text("{half")  # a crash mid-write: free, not fatal
    assert store.hold_lease("autopilot", "host/2/def", 30) == "host/2/def"
    with pytest.raises(ValueError, match="lease name"):
        store.hold_lease("../escape", "x", 30)
