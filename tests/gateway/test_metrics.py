"""Metrics across workers: what a worker that died without a shutdown leaves behind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.metrics import MULTIPROC_ENV, Metrics


def test_a_dead_workers_live_gauges_leave_the_sum_and_its_counters_stay(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
    dead = int(finished.stdout)  # a pid that existed and is gone (as after kill -9)
    files = {
        "dead_in_flight": tmp_path / f"gauge_livesum_{dead}.db",
        "dead_breaker": tmp_path / f"gauge_livemax_{dead}.db",
        "dead_counter": tmp_path / f"counter_{dead}.db",
        "own_in_flight": tmp_path / f"gauge_livesum_{os.getpid()}.db",
    }
    for path in files.values():
        path.write_bytes(b"")
    monkeypatch.setenv(MULTIPROC_ENV, str(tmp_path))
    Metrics.forget_dead_workers()
    assert not files["dead_in_flight"].exists() and not files["dead_breaker"].exists()
    assert files["dead_counter"].exists(), "its requests happened: they stay counted"
    assert files["own_in_flight"].exists()
