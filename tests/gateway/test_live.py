"""Live figures for the console: recorded per worker, published to files, summed across workers."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from gateway.live import LiveStats


def test_one_worker_sees_its_own_figures_without_a_directory():
    live = LiveStats()
    for seconds in (0.010, 0.020, 0.500):
        live.record("reviews.list", "legacy", 200, seconds)
    live.record("reviews.list", "legacy", 503, 0.001)
    figures = live.snapshot()["reviews.list"]["legacy"]
    assert figures["requests"] == 4 and figures["workers"] == 1
    assert figures["error_rate"] == 0.25
    assert 500 <= figures["p99_ms"] <= 625, "the histogram bound is within 25 % above the slowest"


def test_every_workers_published_figures_are_summed(tmp_path: Path):
    other = LiveStats(tmp_path)
    for _ in range(3):
        other.record("reviews.list", "candidate", 200, 0.004)
    other.publish()
    # Publishing names the file after this process; pretend it came from another worker.
    os.replace(tmp_path / f"live-{os.getpid()}.json", tmp_path / "live-4242.json")
    mine = LiveStats(tmp_path)
    mine.record("reviews.list", "candidate", 500, 0.002)
    figures = mine.snapshot()["reviews.list"]["candidate"]
    assert figures["requests"] == 4 and figures["workers"] == 2
    assert figures["error_rate"] == 0.25


def test_stopped_and_half_written_workers_are_ignored(tmp_path: Path):
    stale = tmp_path / "live-1.json"
    now = int(time.time())
    stale.write_text(json.dumps({"series": {"reviews.list legacy": [[now, 9, 0, {"0": 9}]]}}))
    os.utime(stale, (now - 120, now - 120))
    (tmp_path / "live-2.json").write_text('{"series": {"reviews.li')
    live = LiveStats(tmp_path)
    live.record("reviews.list", "legacy", 200, 0.001)
    assert live.snapshot()["reviews.list"]["legacy"]["requests"] == 1
    live.publish()
    live.forget()
    assert not (tmp_path / f"live-{os.getpid()}.json").exists()
