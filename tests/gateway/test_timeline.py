"""The console's timeline: each worker's seconds, every worker's files summed over a 900 s window,
override changes as markers, and ``GET /_gateway/admin/timeline`` (token, shape, markers, a store
that fails or hangs)."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from starlette.testclient import TestClient

import gateway.live
from flags.model import AuditEntry, Override
from flags.overrides import FileOverrideStore, OverrideStoreError
from gateway.admin import admin_app
from gateway.live import LiveStats
from gateway.timeline import LAG_SECONDS, WINDOW_SECONDS, Timeline, markers

T0 = 1_800_000_000  # a whole second; every test sets the clock itself
TOKEN = "timeline-test-admin-token"
ROUTES = ["reviews.list", "reviews.summary", "reviews.detail"]


class Clock:
    def __init__(self) -> None:
        self.now = float(T0)

    def time(self) -> float:
        return self.now


@pytest.fixture(name="clock")
def _clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """The time LiveStats.record files requests under (the request path reads the clock itself)."""
    fake = Clock()
    monkeypatch.setattr(gateway.live, "time", fake)
    return fake


def _traffic(live: LiveStats, clock: Clock, second: int, backend: str, *latencies: float, errors: int = 0):
    clock.now = second + 0.5
    for index, seconds in enumerate(latencies):
        live.record(ROUTES[index % len(ROUTES)], backend, 503 if index < errors else 200, seconds)


def _worker(
    directory: Path,
    clock: Clock,
    pid: int,
    seconds: dict[int, tuple[float, ...]],
    limit: float,
    shed: int = 0,
) -> Path:
    """Another worker's file: its traffic fed second by second, published, renamed to its pid."""
    live, timeline = LiveStats(), Timeline(directory)
    for second, latencies in sorted(seconds.items()):
        _traffic(live, clock, second, "legacy", *latencies)
        for _ in range(shed):
            live.record_shed("legacy")
        timeline.feed(live, {"legacy": limit}, second + 1.05)
    published = max(seconds) + 1.05
    timeline.publish(published)
    path = directory / f"timeline-{pid}.json"
    os.replace(directory / f"timeline-{os.getpid()}.json", path)
    os.utime(path, (published, published))  # written at that time by the fake clock
    return path


def _at(document: dict, second: int) -> int:
    return second - document["start"]


# --- One worker ---------------------------------------------------------------------------------


def test_a_worker_takes_each_completed_second_once_with_all_routes_together(clock: Clock):
    live, timeline = LiveStats(), Timeline()
    # 98 fast requests and 2 slow ones over three routes: p99 is the slow ones' bucket.
    _traffic(live, clock, T0, "legacy", *([0.004] * 98 + [0.300] * 2), errors=3)
    _traffic(live, clock, T0, "candidate", 0.002)
    timeline.feed(live, {"legacy": 20.0}, T0 + 1.05)
    _traffic(live, clock, T0 + 1, "legacy", 0.004)  # the second in progress: not taken yet
    timeline.feed(live, {"legacy": 18.0}, T0 + 1.5)  # a second feed within the same second
    own = timeline.own(T0 + 1.5)
    [(second, requests, errors, p99)] = own["backends"]["legacy"]
    assert (second, requests, errors) == (T0, 100, 3)
    assert 300 <= p99 <= 375, "the slow requests' bucket, within 25 % above them"
    assert [row[:3] for row in own["backends"]["candidate"]] == [(T0, 1, 0)]
    assert own["clusters"]["legacy"] == [(T0, 20.0, 0)]

    live.record_shed("legacy")  # at T0 + 1, like the last request
    timeline.feed(live, {"legacy": 18.0}, T0 + 2.05)
    own = timeline.own(T0 + 2.05)
    assert [row[:3] for row in own["backends"]["legacy"]] == [(T0, 100, 3), (T0 + 1, 1, 0)]
    assert own["clusters"]["legacy"] == [(T0, 20.0, 0), (T0 + 1, 18.0, 1)]


def test_a_quiet_second_still_has_the_limit_and_a_late_tick_catches_up(clock: Clock):
    live, timeline = LiveStats(), Timeline()
    timeline.feed(live, {"legacy": 20.0}, T0 + 1.05)
    _traffic(live, clock, T0 + 2, "legacy", 0.004)
    timeline.feed(live, {"legacy": 25.0}, T0 + 4.05)  # the event loop was busy for two ticks
    own = timeline.own(T0 + 4.05)
    assert own["clusters"]["legacy"] == [
        (T0 + s, limit, 0) for s, limit in ((0, 20.0), (1, 25.0), (2, 25.0), (3, 25.0))
    ]
    assert [row[:3] for row in own["backends"]["legacy"]] == [(T0 + 2, 1, 0)]


# --- Every worker -------------------------------------------------------------------------------


def test_every_workers_file_is_summed_exactly_and_p99_is_the_highest(tmp_path: Path, clock: Clock):
    _worker(tmp_path, clock, 101, {T0: (0.004,) * 10, T0 + 1: (0.004,) * 5}, limit=20.0, shed=2)
    _worker(tmp_path, clock, 102, {T0: (0.004,) * 9 + (0.500,)}, limit=15.0, shed=1)
    mine = Timeline(tmp_path)
    live = LiveStats()
    _traffic(live, clock, T0, "legacy", 0.010, 0.010, errors=1)
    _traffic(live, clock, T0, "candidate", 0.002)
    mine.feed(live, {"legacy": 30.0}, T0 + 1.05)

    document = mine.merged(T0 + 1 + LAG_SECONDS)
    i = _at(document, T0)
    legacy = document["backends"]["legacy"]
    assert (legacy["requests"][i], legacy["errors"][i]) == (22, 1)
    assert legacy["error_rate"][i] == round(1 / 22, 4)
    assert 500 <= legacy["p99_ms"][i] <= 625, "the slowest worker's p99 (the upper bound)"
    assert document["backends"]["candidate"]["requests"][i] == 1
    assert document["clusters"]["legacy"]["limit"][i] == 65.0  # 20 + 15 + 30
    assert document["clusters"]["legacy"]["shed"][i] == 3
    assert document["workers"] == 3
    # Worker 101's next second is in its file, the others had none: summed as zero, not missing.
    assert legacy["requests"][i + 1] == 5 and document["clusters"]["legacy"]["limit"][i + 1] == 20.0


def test_the_window_is_900_seconds_ending_two_seconds_ago(tmp_path: Path, clock: Clock):
    now = T0 + 2000.3
    end = int(now) - LAG_SECONDS
    start = end - WINDOW_SECONDS + 1
    _worker(tmp_path, clock, 201, {start - 1: (0.004,), start: (0.004,) * 2, end: (0.004,) * 3}, limit=10.0)
    _worker(tmp_path, clock, 202, {end + 1: (0.004,) * 7}, limit=10.0)  # not every worker has it yet

    document = Timeline(tmp_path).merged(now)
    assert (document["start"], document["end"], document["window_seconds"]) == (start, end, 900)
    requests = document["backends"]["legacy"]["requests"]
    assert len(requests) == 900 and all(len(v) == 900 for v in document["clusters"]["legacy"].values())
    assert (requests[0], requests[-1], sum(requests)) == (2, 3, 5)
    assert document["backends"]["candidate"]["requests"] == [0] * 900
    assert document["backends"]["candidate"]["p99_ms"] == [None] * 900
    assert document["backends"]["candidate"]["error_rate"] == [None] * 900


def test_stopped_workers_count_for_their_seconds_until_those_leave_the_window(tmp_path: Path, clock: Clock):
    now = T0 + 3000.0
    recent = _worker(tmp_path, clock, 301, {int(now) - 120: (0.004,) * 4}, limit=10.0)
    os.utime(recent, (now - 119, now - 119))  # stopped two minutes ago
    gone = _worker(tmp_path, clock, 302, {int(now) - 1000: (0.004,) * 8}, limit=10.0)
    os.utime(gone, (now - 999, now - 999))  # stopped before the window began
    # Rows inside the window in a file last written before it: a clock that jumped; ignored too.
    forged = _worker(tmp_path, clock, 303, {int(now) - 60: (0.004,) * 16}, limit=10.0)
    os.utime(forged, (now - 999, now - 999))

    timeline = Timeline(tmp_path)
    document = timeline.merged(now)
    assert sum(document["backends"]["legacy"]["requests"]) == 4
    assert document["workers"] == 1
    timeline.publish(now)  # sweeps the files nothing is shown of
    assert recent.exists() and not gone.exists() and not forged.exists()


@pytest.mark.parametrize(
    "text",
    [
        '{"backends": {"legacy": [[1800000000, 5, 0, 4.',  # half-written
        '{"backends": {"legacy": [[1800000000, 5, 0, NaN]]}, "clusters": {}}',
        '{"backends": {"legacy": [[1800000000, "5", 0, 4.0]]}, "clusters": {}}',
        '{"backends": {"legacy": [[1800000000, 5, 0]]}, "clusters": {}}',
        '{"backends": {"legacy": [[1800000000.5, 5, 0, 4.0]]}, "clusters": {}}',
        '{"backends": {}, "clusters": {"legacy": [[1800000000, 2, null]]}}',
        '{"series": {}}',
        "[]",
    ],
)
def test_a_file_that_is_not_a_timeline_is_skipped_whole(tmp_path: Path, clock: Clock, text: str):
    _worker(tmp_path, clock, 401, {T0: (0.004,)}, limit=10.0)
    bad = tmp_path / "timeline-402.json"
    bad.write_text(text)
    os.utime(bad, (T0, T0))
    document = Timeline(tmp_path).merged(T0 + LAG_SECONDS)
    assert document["backends"]["legacy"]["requests"][-1] == 1
    assert document["clusters"]["legacy"]["limit"][-1] == 10.0
    assert document["workers"] == 1


# --- Markers ------------------------------------------------------------------------------------


def _entry(route: str, at: float, after: dict | None, actor: str = "console", reason: str = "8 pm push"):
    action = "set" if after else "release"
    return AuditEntry(route=route, actor=actor, reason=reason, at=at, before=None, after=after, action=action)


def _override(route: str, backend: str = "candidate", percent: int | None = None) -> dict:
    return Override.create(
        route=route, backend=backend, percent=percent, reason="r", actor="a", ttl_seconds=None, now=T0
    ).to_json()


def test_one_marker_per_change_and_star_for_every_route():
    entries = [_entry(route, T0 + 10, _override(route)) for route in ROUTES]  # a flip-all
    entries.append(_entry("reviews.list", T0 + 20, _override("reviews.list", percent=25), actor="autopilot"))
    entries += [_entry(route, T0 + 30, None, reason="spike over") for route in ROUTES[:2]]
    assert markers(entries, ROUTES) == [
        {"at": T0 + 10, "route": "*", "routes": sorted(ROUTES), "action": "set", "to": "candidate",
         "actor": "console", "reason": "8 pm push"},
        {"at": T0 + 20, "route": "reviews.list", "routes": ["reviews.list"], "action": "set",
         "to": "candidate 25 %", "actor": "autopilot", "reason": "8 pm push"},
        {"at": T0 + 30, "route": "reviews.list, reviews.summary",
         "routes": ["reviews.list", "reviews.summary"], "action": "release", "to": None,
         "actor": "console", "reason": "spike over"},
    ]  # fmt: skip


# --- GET /_gateway/admin/timeline ---------------------------------------------------------------


class HangingStore:
    def __init__(self) -> None:
        self.release = threading.Event()

    def audit(self, *, since: float | None = None, limit: int = 50) -> list[AuditEntry]:
        self.release.wait(10)
        return []


class DownStore:
    def audit(self, *, since: float | None = None, limit: int = 50) -> list[AuditEntry]:
        raise OverrideStoreError("Redis at 127.0.0.1:1 is not reachable: connection refused")


def _client(store: object, timeline: Timeline) -> TestClient:
    app = admin_app()
    app.state.runtime = SimpleNamespace(
        settings=SimpleNamespace(admin_token=TOKEN),
        flags=SimpleNamespace(overrides=store),
        table=SimpleNamespace(
            routes=[SimpleNamespace(id=route) for route in ROUTES], default_cluster="legacy"
        ),
    )
    app.state.timeline = timeline
    return TestClient(app)


@pytest.fixture(name="store")
def _store(tmp_path: Path) -> FileOverrideStore:
    return FileOverrideStore(tmp_path / "overrides.json", tmp_path / "audit.jsonl")


def _serving(clock: Clock) -> Timeline:
    """A timeline with one request ten seconds ago (by the real clock: the endpoint reads that)."""
    live, timeline = LiveStats(), Timeline()
    clock.now = time.time() - 10
    live.record("reviews.list", "legacy", 200, 0.004)
    timeline.feed(live, {"legacy": 20.0}, clock.now + 1)
    return timeline


def test_the_timeline_needs_the_admin_token(store: FileOverrideStore, tmp_path: Path):
    with _client(store, Timeline()) as client:
        for headers in ({}, {"Authorization": "Bearer not-the-token"}):
            response = client.get("/_gateway/admin/timeline", headers=headers)
            assert response.status_code == 401
            assert response.json()["error"]["code"] == "unauthenticated"
            assert "backends" not in response.text


def test_the_timeline_has_the_series_and_the_windows_changes_as_markers(
    store: FileOverrideStore, clock: Clock
):
    # One change before the window (not marked), a flip-all through the store, a release.
    old = _entry("reviews.list", time.time() - 1000, _override("reviews.list"), reason="yesterday")
    with store.audit_path.open("w") as audit:
        audit.write(json.dumps(old.to_json()) + "\n")
    flip = [(route, Override.from_json({**_override(route), "at": time.time()})) for route in ROUTES]
    store.apply(flip, actor="console", reason="push")
    store.apply([("reviews.list", None)], actor="ops", reason="list is fine")

    with _client(store, _serving(clock)) as client:
        response = client.get("/_gateway/admin/timeline", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200 and response.headers["cache-control"] == "no-store"
    document = response.json()
    assert document["end"] - document["start"] == 899 and document["resolution_seconds"] == 1
    assert set(document["backends"]) == {"legacy", "candidate"}
    for series in document["backends"].values():
        assert set(series) == {"requests", "errors", "error_rate", "p99_ms"}
        assert all(len(values) == 900 for values in series.values())
    assert sum(document["backends"]["legacy"]["requests"]) == 1
    assert [v for v in document["clusters"]["legacy"]["limit"] if v is not None] == [20.0]
    assert document["legacy_cluster"] == "legacy"
    assert "markers_error" not in document
    assert [(m["route"], m["action"], m["to"], m["actor"], m["reason"]) for m in document["markers"]] == [
        ("*", "set", "candidate", "console", "push"),
        ("reviews.list", "release", None, "ops", "list is fine"),
    ]


@pytest.mark.parametrize("broken", [DownStore(), HangingStore()], ids=["store down", "store silent"])
def test_without_the_store_the_series_still_come_with_markers_error(broken: object, clock: Clock):
    try:
        with _client(broken, _serving(clock)) as client:
            response = client.get("/_gateway/admin/timeline", headers={"Authorization": f"Bearer {TOKEN}"})
    finally:
        if isinstance(broken, HangingStore):
            broken.release.set()
    assert response.status_code == 200
    document = response.json()
    assert sum(document["backends"]["legacy"]["requests"]) == 1
    assert document["markers"] == []
    assert "not reachable" in document["markers_error"] or "did not answer" in document["markers_error"]
