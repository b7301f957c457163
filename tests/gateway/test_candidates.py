"""Next routes to strangle: path templates, the ranking, every worker summed, and bounded memory."""

from __future__ import annotations

import json
import os
import random
import string
import tracemalloc
from pathlib import Path

import pytest

from gateway.candidates import MAX_TEMPLATES, Candidates, fold, since_seconds

UUID = "3f2b8c9e-1d4a-4b6f-9e2a-7c5d1e0f9a8b"


@pytest.mark.parametrize(
    ("path", "template"),
    [
        ("/api/v1/items/42", "/api/v1/items/{id}"),
        ("/api/v1/items/42/reviews/7", "/api/v1/items/{id}/reviews/{id}"),
        (f"/api/v1/orders/{UUID}", "/api/v1/orders/{uuid}"),
        ("/api/v1/carts/a1b2c3d4e5f6a7b8c9d0", "/api/v1/carts/{token}"),
        ("/api/v1/recommendations/recently-viewed", "/api/v1/recommendations/recently-viewed"),
        ("/api/v1/users/user00001", "/api/v1/users/user00001"),  # short: a name, not an id
        ("/", "/"),
    ],
)
def test_ids_and_uuids_are_folded(path: str, template: str):
    assert fold(path) == template


def test_templates_are_ranked_by_legacy_time_with_errors_signed_in_share_and_hot_routes_marked():
    candidates = Candidates()
    for n in range(100):
        candidates.record("GET", fold(f"/api/v1/items/{n}"), None, 200, 0.050, signed_in=n % 4 == 0)
    for _ in range(1000):  # many, but cheap
        candidates.record("GET", "/api/v1/ping", None, 200, 0.001, signed_in=False)
    for n in range(20):
        candidates.record("POST", "/api/v1/orders", None, 500 if n < 2 else 201, 0.400, signed_in=True)
    candidates.record("GET", "/api/v1/reviews/items/{item_id}", "reviews.list", 200, 0.010, signed_in=False)
    candidates.count()  # served by a candidate: only the total grows
    summary = candidates.summary(since=3600, limit=10)
    rows = summary["candidates"]
    assert [(row["method"], row["template"]) for row in rows[:3]] == [
        ("POST", "/api/v1/orders"),  # 20 x 400 ms = 8 s
        ("GET", "/api/v1/items/{id}"),  # 100 x 50 ms = 5 s
        ("GET", "/api/v1/ping"),  # 1000 x 1 ms = 1 s
    ]
    orders, items = rows[0], rows[1]
    assert (orders["requests"], orders["errors"], orders["error_rate"], orders["signed_in_share"]) == (
        20,
        2,
        0.1,
        1.0,
    )
    assert items["signed_in_share"] == 0.25 and 50 <= items["p99_ms"] <= 62.5 and items["hot_route"] is None
    assert summary["requests"] == 1122 and items["share"] == round(100 / 1122, 4)
    [hot] = [row for row in rows if row["hot_route"]]
    assert (hot["hot_route"], hot["template"]) == ("reviews.list", "/api/v1/reviews/items/{item_id}")


def test_memory_stays_bounded_under_100k_distinct_random_paths():
    candidates = Candidates(clock=lambda: 1_800_000_000.0)  # one slice: the bound is per slice
    rng = random.Random(7)
    tracemalloc.start()
    try:
        for n in range(100_000):
            word = "".join(rng.choices(string.ascii_lowercase, k=12))
            candidates.record("GET", fold(f"/scan/{word}"), None, 404, 0.002, signed_in=False)
            if n % 50 == 0:  # the real endpoints keep being requested meanwhile
                candidates.record("GET", fold(f"/api/v1/items/{n}"), None, 200, 0.030, signed_in=False)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert candidates.templates() <= MAX_TEMPLATES + 1  # the templates kept, and "(other templates)"
    assert peak < 8 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB"
    summary = candidates.summary(since=3600, limit=5)
    assert summary["candidates"][0]["template"] == "/api/v1/items/{id}", "the endpoint that matters stays"
    assert summary["other"]["requests"] > 90_000 and summary["requests"] == 102_000


def test_every_workers_file_is_summed(tmp_path: Path):
    other = Candidates(tmp_path)
    other.record("GET", "/api/v1/items/{id}", None, 200, 0.010, signed_in=False)
    other.publish()
    os.replace(tmp_path / f"candidates-{os.getpid()}.json", tmp_path / "candidates-4242.json")
    mine = Candidates(tmp_path)
    mine.record("GET", "/api/v1/items/{id}", None, 503, 0.020, signed_in=True)
    mine.publish()  # not counted twice
    summary = mine.summary(since=3600, limit=5, own=mine.own())
    [row] = summary["candidates"]
    assert (row["requests"], row["errors"], summary["workers"]) == (2, 1, 2)
    mine.forget()
    assert not (tmp_path / f"candidates-{os.getpid()}.json").exists()


def test_the_published_file_encodes_a_closed_slice_once():
    now = [1_800_000_000.0]
    candidates = Candidates(clock=lambda: now[0])
    candidates.record("GET", "/api/v1/items/{id}", None, 200, 0.010, signed_in=False)
    now[0] += 300  # the next slice
    candidates.record("GET", "/api/v1/items/{id}", None, 200, 0.010, signed_in=False)
    first = candidates.document()
    assert json.loads(first) == json.loads(json.dumps({"slices": candidates.own()}))
    closed = candidates._closed[1_800_000_000]
    candidates.record("GET", "/api/v1/items/{id}", None, 503, 0.020, signed_in=True)
    assert candidates._closed[1_800_000_000] is closed, "not encoded again"
    assert json.loads(candidates.document())["slices"][1][1] == 2, "the newest slice is"


@pytest.mark.parametrize(("raw", "seconds"), [("1h", 3600), ("15m", 900), ("90s", 90), ("600", 600)])
def test_since_takes_durations_up_to_the_hour_kept(raw: str, seconds: float):
    assert since_seconds(raw) == seconds


@pytest.mark.parametrize("raw", ["2h", "0s", "-5m", "soon", ""])
def test_since_refuses_anything_else(raw: str):
    assert since_seconds(raw) is None
