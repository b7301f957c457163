"""What an override may hold, checked where flagctl and the admin API both build one (``flags.model``),
and stores that skip a bad stored value instead of failing on it: the file store, and Redis's hash
and audit stream."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from typer.testing import CliRunner

from flags.cli import app
from flags.model import MAX_TTL_SECONDS, AuditEntry, InvalidOverride, Override
from flags.overrides import AUDIT_STREAM, HASH_KEY, FileOverrideStore, OverrideStoreError, RedisOverrideStore
from flags.settings import ensure_flags_file, load_flags_settings
from tests.support.redis_db import TEST_REDIS_URL, clean_redis
from tests.support.waiting import eventually

REDIS_URL = TEST_REDIS_URL
NOW = 1_800_000_000.0
GOOD = {"route": "reviews.list", "backend": "candidate", "reason": "canary", "actor": "ops"}


def _create(**changes):
    return Override.create(**{**GOOD, "now": NOW, **changes})


def _problems(**changes) -> dict[str, list[str]]:
    with pytest.raises(InvalidOverride) as caught:
        _create(**changes)
    return caught.value.fields


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"ttl_seconds": float("nan")}, "ttl_seconds"),
        ({"ttl_seconds": float("inf")}, "ttl_seconds"),
        ({"ttl_seconds": -float("inf")}, "ttl_seconds"),
        ({"ttl_seconds": 10**400}, "ttl_seconds"),
        ({"ttl_seconds": MAX_TTL_SECONDS + 1}, "ttl_seconds"),
        ({"ttl_seconds": 0}, "ttl_seconds"),
        ({"ttl_seconds": True}, "ttl_seconds"),
        ({"ttl_seconds": "60"}, "ttl_seconds"),
        ({"percent": True}, "percent"),
        ({"percent": 101}, "percent"),
        ({"percent": 25.0}, "percent"),
        ({"percent": float("nan")}, "percent"),
        ({"percent": 25, "backend": "legacy"}, "percent"),
        ({"backend": "sideways"}, "backend"),
        ({"backend": ["candidate"]}, "backend"),
        ({"reason": "x" * 501}, "reason"),
        ({"reason": " \n "}, "reason"),
        ({"reason": None}, "reason"),
        ({"actor": "a" * 201}, "actor"),
        ({"actor": ""}, "actor"),
        ({"actor": 7}, "actor"),
        ({"route": ""}, "route"),
        ({"route": "r" * 101}, "route"),
        ({"now": float("nan")}, "at"),
    ],
)
def test_a_bad_value_is_refused_by_name(changes, field):
    assert field in _problems(**changes)


def test_every_problem_is_named_at_once_and_messages_never_repeat_the_value():
    fields = _problems(ttl_seconds=float("nan"), reason="é" * 5_000_000, actor="")
    assert set(fields) == {"ttl_seconds", "reason", "actor"}
    assert len(str(InvalidOverride(fields))) < 500


def test_the_bounds_themselves_are_allowed():
    override = _create(ttl_seconds=MAX_TTL_SECONDS, percent=100, reason="x" * 500, actor="a" * 200)
    assert override.expires_at == NOW + MAX_TTL_SECONDS
    assert Override.from_json(override.to_json()) == override


@pytest.mark.parametrize(
    "stored",
    [
        {**GOOD, "at": float("nan")},
        {**GOOD, "at": NOW, "expires_at": float("inf")},
        {**GOOD, "at": NOW, "reason": "x" * 501},
        {**GOOD, "at": NOW, "percent": "25"},
        {**GOOD, "at": True},
        {"route": "reviews.list", "at": NOW},
        ["not", "an", "object"],
        "text",
    ],
)
def test_a_stored_override_that_is_not_well_formed_is_a_value_error(stored):
    with pytest.raises(ValueError):
        Override.from_json(stored)


def test_an_audit_entry_is_checked_like_an_override():
    entry = {"route": "reviews.list", "action": "set", "actor": "ops", "reason": "r", "at": NOW}
    assert AuditEntry.from_json({**entry, "before": None, "after": None}).route == "reviews.list"
    for bad in (
        {**entry, "at": float("nan")},
        {**entry, "reason": "r" * 501},
        {**entry, "action": "explode"},
        {**entry, "after": {"backend": "sideways"}},
        {**entry, "after": {**GOOD, "at": float("inf")}},
    ):
        with pytest.raises(ValueError):
            AuditEntry.from_json(bad)


# --- The file store -------------------------------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> FileOverrideStore:
    return FileOverrideStore(tmp_path / "overrides.json", tmp_path / "audit.jsonl")


def test_the_file_store_skips_bad_entries_and_lines_once_each_with_a_warning(store, caplog):
    store.apply([("reviews.list", _create(now=time.time()))], actor="ops", reason="canary")
    document = json.loads(store.path.read_text())
    good = document["overrides"]["reviews.list"]
    document["overrides"]["reviews.detail"] = {**good, "route": "reviews.detail", "at": "NaN"}
    document["overrides"]["reviews.mine"] = 42
    store.path.write_text(json.dumps(document).replace('"NaN"', "NaN"))
    entry = store.audit()[0].to_json()
    with store.audit_path.open("a") as audit:
        audit.write("{broken\n" + "[" * 100_000 + "\n" + json.dumps({**entry, "reason": "later"}) + "\n")

    with caplog.at_level(logging.WARNING, logger="flags.overrides"):
        fresh = FileOverrideStore(store.path, store.audit_path)
        assert set(fresh.snapshot()) == {"reviews.list"}
        assert [e.reason for e in fresh.audit()] == ["canary", "later"]
        assert [e.reason for e in fresh.audit(limit=1)] == ["later"]
        first = len(caplog.records)
        fresh.audit()
    assert first >= 4, [r.getMessage() for r in caplog.records]
    assert len(caplog.records) == first, "a bad line is reported once, not on every read"

    # The next write keeps the well-formed overrides only.
    fresh.apply(
        [("reviews.summary", _create(route="reviews.summary", now=time.time()))], actor="o", reason="r"
    )
    assert set(json.loads(store.path.read_text())["overrides"]) == {"reviews.list", "reviews.summary"}


def test_a_change_with_a_bad_reason_writes_nothing(store):
    with pytest.raises(InvalidOverride):
        store.apply([("reviews.list", None)], actor="ops", reason="x" * 501)
    assert not store.path.exists() and not store.audit_path.exists()


def test_an_overrides_file_that_is_not_a_document_refuses_writes_and_keeps_it(store):
    store.path.write_text("[1, 2, 3]")
    with pytest.raises(OverrideStoreError, match="unreadable"):
        store.apply([("reviews.list", _create(now=time.time()))], actor="ops", reason="canary")
    assert store.path.read_text() == "[1, 2, 3]"
    assert FileOverrideStore(store.path, store.audit_path).snapshot() == {}


# --- flagctl uses the same checks -------------------------------------------------------------------


@pytest.fixture
def flagctl(tmp_path: Path):
    runner = CliRunner()
    env = {"VAR_DIR": str(tmp_path), "REDIS_URL": "", "UNLEASH_URL": "", "COLUMNS": "200"}
    ensure_flags_file(load_flags_settings(env))
    return lambda *args: runner.invoke(app, list(args), env=env), tmp_path


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("route", "reviews.list", "--to", "candidate", "--reason", "x", "--ttl", "30d"), "--ttl"),
        (("route", "reviews.list", "--to", "candidate", "--reason", "x", "--ttl", "0s"), "--ttl"),
        (("route", "reviews.list", "--to", "candidate", "--reason", "x" * 501), "--reason"),
        (("flip-all", "--to", "candidate", "--reason", "x", "--actor", "a" * 201), "--actor"),
        (("flip-all", "--to", "legacy", "--reason", "x", "--ttl", "99999999999d"), "--ttl"),
    ],
)
def test_flagctl_refuses_what_the_admin_api_refuses_and_writes_nothing(flagctl, args, message):
    run, var = flagctl
    result = run(*args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not (var / "overrides.json").exists() and not (var / "audit.jsonl").exists()


def test_flagctl_release_with_an_oversized_reason_writes_nothing(flagctl):
    run, var = flagctl
    assert run("route", "reviews.list", "--to", "candidate", "--reason", "canary").exit_code == 0
    trail = (var / "audit.jsonl").read_bytes()
    result = run("release", "reviews.list", "--reason", "x" * 501)
    assert result.exit_code == 2 and "--reason" in result.output
    assert (var / "audit.jsonl").read_bytes() == trail


# --- Redis: the hash and the stream -----------------------------------------------------------------


@pytest.fixture
def redis_client() -> Iterator[redis.Redis]:
    with clean_redis(HASH_KEY, AUDIT_STREAM) as client:
        yield client


def test_the_redis_store_skips_a_bad_hash_entry_and_a_bad_stream_entry(redis_client):
    writer = RedisOverrideStore(REDIS_URL)
    reader = RedisOverrideStore(REDIS_URL)
    try:
        writer.apply([("reviews.list", _create(now=time.time()))], actor="ops", reason="canary")
        good = json.loads(redis_client.hget(HASH_KEY, "reviews.list"))
        redis_client.hset(
            HASH_KEY, "reviews.detail", json.dumps({**good, "at": "NaN"}).replace('"NaN"', "NaN")
        )
        redis_client.hset(HASH_KEY, "reviews.mine", "{not json")
        redis_client.xadd(AUDIT_STREAM, {"entry": "{not json"})
        redis_client.xadd(AUDIT_STREAM, {"something": "else"})
        redis_client.xadd(AUDIT_STREAM, {"entry": json.dumps({"route": "x", "reason": "r" * 501})})
        reader.start()
        assert eventually(lambda: "reviews.list" in reader.snapshot())
        assert reader.healthy() and set(reader.snapshot()) == {"reviews.list"}
        assert [e.reason for e in reader.audit()] == ["canary"]
        # Writes go on with the bad entries in place.
        writer.apply([("reviews.list", None)], actor="ops", reason="calm")
        assert eventually(lambda: "reviews.list" not in reader.snapshot())
        assert [e.reason for e in reader.audit()] == ["canary", "calm"]
    finally:
        reader.stop()
        writer.stop()
