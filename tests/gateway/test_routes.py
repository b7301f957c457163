"""The route table: loading, matching (literal before parameter), method handling, path safety."""

from __future__ import annotations

import pytest

from gateway.routes import RouteTableError, build_table, load_table, unsafe_path
from gateway.settings import DEFAULT_ROUTES_FILE

URLS = {
    "legacy": "http://127.0.0.1:8001",
    "reviews": "http://127.0.0.1:8002",
    "recommendations": "http://127.0.0.1:8003",
}


@pytest.fixture(scope="module")
def table():
    return load_table(DEFAULT_ROUTES_FILE, URLS)


@pytest.mark.parametrize(
    ("method", "path", "route"),
    [
        ("GET", "/api/v1/reviews/items/1", "reviews.list"),
        ("HEAD", "/api/v1/reviews/items/1", "reviews.list"),
        ("GET", "/api/v1/reviews/items/abc/summary", "reviews.summary"),
        ("GET", "/api/v1/reviews/me", "reviews.mine"),
        ("GET", "/api/v1/reviews/42", "reviews.detail"),
        ("DELETE", "/api/v1/reviews/42", "reviews.delete"),
        ("DELETE", "/api/v1/reviews/me", "reviews.delete"),
        ("PUT", "/api/v1/reviews/42/helpful", "reviews.helpful"),
        ("POST", "/api/v1/reviews", "reviews.create"),
        ("GET", "/api/v1/recommendations/home", "recommendations.home"),
        ("GET", "/api/v1/recommendations/items/7/similar", "recommendations.similar"),
        ("GET", "/api/v1/recommendations/recently-viewed", "recommendations.recent"),
    ],
)
def test_hot_routes_match(table, method, path, route):
    matched = table.match(method, path)
    assert matched is not None and matched.id == route


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/v1/reviews/items/1"),  # wrong method: legacy answers 405
        ("GET", "/api/v1/reviews"),
        ("GET", "/api/v1/reviews/items/1/"),
        ("GET", "/api/v1/reviews/items/"),
        ("GET", "/API/V1/REVIEWS/ME"),
        ("GET", "/api/v1/items/1"),
        ("GET", "/"),
    ],
)
def test_everything_else_is_unmatched(table, method, path):
    assert table.match(method, path) is None


def test_clusters_take_urls_from_settings(table):
    assert table.clusters["reviews"].port == 8002
    assert table.default_cluster == "legacy"
    other = load_table(DEFAULT_ROUTES_FILE, {**URLS, "reviews": "http://10.1.2.3:9000"})
    assert (other.clusters["reviews"].host, other.clusters["reviews"].port) == ("10.1.2.3", 9000)


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"clusters": {}}, "default_cluster"),
        ({"clusters": {"legacy": {"url": "ftp://x"}}}, "url must be http"),
        (
            {
                "clusters": {"legacy": {"url": "http://a:1"}},
                "routes": [{"id": "r", "path": "/x", "candidate": "nope"}],
            },
            "candidate cluster",
        ),
        (
            {
                "clusters": {"legacy": {"url": "http://a:1"}},
                "routes": [{"id": "r", "path": "/x", "candidate": "legacy", "auth": "maybe"}],
            },
            "auth must be",
        ),
        (
            {
                "clusters": {"legacy": {"url": "http://a:1"}},
                "routes": [
                    {"id": "a", "path": "/x/{id}", "candidate": "legacy"},
                    {"id": "b", "path": "/x/{other}", "candidate": "legacy"},
                ],
            },
            "claimed by a and b",
        ),
        (
            {
                "clusters": {"legacy": {"url": "http://a:1"}},
                # A route's flag is always route.<id>: a key naming another one is refused, not ignored.
                "routes": [{"id": "r", "path": "/x", "candidate": "legacy", "flag": "route.other"}],
            },
            r"route r: unknown keys \['flag'\]",
        ),
    ],
)
def test_malformed_tables_are_refused(document, message):
    with pytest.raises(RouteTableError, match=message):
        build_table(document, {})


def test_a_thousand_routes_still_match_correctly():
    routes = [
        {"id": f"r{n}", "path": f"/api/v{n % 7}/things{n}/{{id}}/part{n % 13}", "candidate": "legacy"}
        for n in range(1000)
    ]
    table = build_table({"clusters": {"legacy": {"url": "http://a:1"}}, "routes": routes}, {})
    assert table.match("GET", "/api/v3/things500/9/part6").id == "r500"  # type: ignore[union-attr]
    assert table.match("GET", "/api/v3/things500/9/part7") is None


@pytest.mark.parametrize(
    ("raw", "unsafe"),
    [
        (b"/api/v1/reviews/items/1", False),
        (b"/api/v1/reviews/items/%EA%B0%80", False),
        (b"/api/v1/reviews/items/1/", False),
        (b"/api/v1/../users/me", True),
        (b"/api/v1/%2e%2e/users/me", True),
        (b"/api/v1/%2E./users", True),
        (b"/api//v1", True),
        (b"/api/v1/a%2fb", True),
        (b"/api/v1/a%5cb", True),
        (b"/api/v1/a\\b", True),
        (b"/api/v1/./x", True),
        (b"/api/v1/..", True),
        (b"/api/v1/%00", True),
        (b"api/v1", True),
    ],
)
def test_unsafe_paths(raw, unsafe):
    assert unsafe_path(raw) is unsafe
