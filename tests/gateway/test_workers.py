"""One gateway, one truth: with several worker processes, one scrape of the metrics and one call of the
admin API count every worker's requests exactly once."""

from __future__ import annotations

import concurrent.futures
import re
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import psutil
import pytest

from tests.gateway.conftest import ADMIN_TOKEN, Stack, _gateway
from tests.support.waiting import eventually

ROUTE = "reviews.summary"
PATH = "/api/v1/reviews/items/3/summary"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


ROUTES = Path(__file__).parents[2] / "gateway" / "routes.toml"


@pytest.fixture(scope="module")
def routes_file(stack: Stack) -> Path:
    path = stack.work / "two-workers-routes.toml"
    path.write_text(ROUTES.read_text())
    return path


@pytest.fixture(scope="module")
def two_workers(stack: Stack, routes_file: Path) -> Iterator[str]:
    """A fresh two-worker gateway in front of the real backends: its figures are this module's alone."""
    with ExitStack() as processes:
        url, _ = _gateway(
            processes,
            stack.work,
            "gw-two-workers",
            {
                "LEGACY_URL": stack.legacy,
                "REVIEWS_URL": stack.reviews,
                "RECOMMENDATIONS_URL": stack.recommendations,
                "ROUTES_FILE": str(routes_file),
            },
            workers=2,
        )
        yield url


def _counter(url: str) -> float:
    text = httpx.get(f"{url}/_gateway/metrics").text
    pattern = re.compile(r"^gateway_requests_total\{(?P<labels>[^}]*)\} (?P<value>\S+)$", re.M)
    return sum(
        float(m["value"])
        for m in pattern.finditer(text)
        if f'route="{ROUTE}"' in m["labels"] and 'backend="legacy"' in m["labels"]
    )


def _live(url: str) -> dict:
    rows = httpx.get(f"{url}/_gateway/admin/routes", headers=ADMIN).json()["routes"]
    return next(row for row in rows if row["route"] == ROUTE)["live"].get("legacy", {})


def _batch(url: str, size: int) -> None:
    def one(_: int) -> int:
        # A new connection per request, so the kernel spreads them over both workers.
        with httpx.Client() as client:
            return client.get(f"{url}{PATH}").status_code

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        assert set(pool.map(one, range(size))) == {200}


def test_one_scrape_counts_every_request_of_every_worker_once(two_workers: str):
    sent = 0

    def both_workers_served() -> bool:
        nonlocal sent
        _batch(two_workers, 20)
        sent += 20
        return _live(two_workers).get("workers") == 2

    # Send until both workers have served some (usually the first batch); every request is counted.
    assert eventually(both_workers_served, timeout=30, interval=0), "only one worker ever answered"
    assert _counter(two_workers) == sent, "one scrape, whichever worker answers it, sums them all"

    def live_caught_up() -> bool:  # the other worker publishes its figures every second
        return _live(two_workers).get("requests") == sent

    assert eventually(live_caught_up, timeout=5), _live(two_workers)
    assert _live(two_workers)["workers"] == 2
    assert _counter(two_workers) == sent, "scraping changes nothing"


def test_a_changed_route_table_reaches_every_worker(two_workers: str, routes_file: Path):
    """The admin reload is answered by one worker; the file change must reach the other too."""
    original = routes_file.read_text()
    start = original.index('id = "reviews.summary"')
    end = original.index("[[routes]]", start)
    block = original[start:end]
    assert 'auth = "none"' in block
    routes_file.write_text(
        original[:start] + block.replace('auth = "none"', 'auth = "required"') + original[end:]
    )

    def every_worker_requires_a_token() -> bool:
        statuses = set()
        for _ in range(12):  # new connections: both workers answer some
            with httpx.Client() as client:
                statuses.add(client.get(f"{two_workers}{PATH}").status_code)
        return statuses == {401}

    try:
        assert eventually(every_worker_requires_a_token, timeout=10, interval=0.1)
    finally:
        routes_file.write_text(original)
    assert eventually(lambda: httpx.get(f"{two_workers}{PATH}").status_code == 200, timeout=10)


def _spawned(child: psutil.Process) -> bool:
    try:
        return child.status() != psutil.STATUS_ZOMBIE and "spawn_main" in " ".join(child.cmdline())
    except psutil.Error:  # gone, or a zombie not reaped yet
        return False


def _workers(port: int) -> list[psutil.Process]:
    """The live spawned worker processes of the gateway serving ``port``."""
    for process in psutil.process_iter(["cmdline"]):
        try:
            if process.info["cmdline"][-2:] == ["-m", "gateway"] and (
                process.environ().get("GATEWAY_PORT") == str(port)
            ):
                return [child for child in process.children() if _spawned(child)]
        except (psutil.Error, TypeError):
            continue
    raise LookupError(f"no gateway on port {port}")


def test_a_worker_that_dies_is_replaced_and_the_others_keep_serving(stack: Stack):
    with ExitStack() as processes:
        url, _ = _gateway(processes, stack.work, "gw-replaced", {"LEGACY_URL": stack.legacy}, workers=2)
        port = int(url.rsplit(":", 1)[1])
        first = _workers(port)
        assert len(first) == 2
        first[0].kill()
        _batch(url, 20)  # served meanwhile by the survivor (and the replacement once it listens)
        assert eventually(
            lambda: len(_workers(port)) == 2 and first[0].pid not in {p.pid for p in _workers(port)}
        )
        _batch(url, 20)
