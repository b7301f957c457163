"""The Unleash provider against a real Unleash server: toggles made through its admin API move
decisions; the cache file bootstraps a worker while the server is down; a server that stops
mid-run leaves the last known toggles in place, reported as stale."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from UnleashClient import UnleashClient
from UnleashClient.utils import InstanceAllowType

from flags import EvaluationContext, Flags
from flags.overrides import FileOverrideStore
from flags.providers import UnleashProvider
from tests.conftest import require_service
from tests.support.unleash import UnleashServer, installed, unleash_server

FLAG = "route.reviews.list"
USERS = [EvaluationContext(user_id=str(n)) for n in range(1000)]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UnleashServer]:
    require_service(installed(), "unleash-server under .cache/node (make node-deps) and node")
    with unleash_server(tmp_path_factory.mktemp("unleash")) as running:
        yield running


def provider(server: UnleashServer, cache: Path, **options) -> UnleashProvider:
    return UnleashProvider(server.url, server.backend_token, cache_file=cache, timeout_seconds=2, **options)


def flags_for(source: UnleashProvider, tmp_path: Path) -> Flags:
    return Flags(overrides=FileOverrideStore(tmp_path / "o.json", tmp_path / "a.jsonl"), providers=[source])


def refresh_until(source: UnleashProvider, check, timeout: float = 15) -> bool:
    """The server publishes a change on its client API up to ~1 s late."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        source.refresh()
        if check():
            return True
        time.sleep(0.2)
    return False


def test_rollout_changes_move_decisions(server, tmp_path):
    source = provider(server, tmp_path / "cache.json")
    flags = flags_for(source, tmp_path)
    server.rollout(FLAG, 100)
    assert refresh_until(source, lambda: flags.decide("reviews.list", USERS[0]).backend == "candidate")
    decision = flags.decide("reviews.list", USERS[0])
    assert (decision.source, decision.reason) == ("unleash", "split")
    server.rollout(FLAG, 0)
    assert refresh_until(source, lambda: flags.decide("reviews.list", USERS[0]).backend == "legacy")
    server.rollout(FLAG, 40)
    assert refresh_until(source, lambda: source.toggles.rollout.get(FLAG) == 40)
    chosen = [flags.decide("reviews.list", user).backend for user in USERS]
    assert 330 < chosen.count("candidate") < 470


def test_the_same_users_as_unleash_client_fetching_from_the_same_server(server, tmp_path):
    server.rollout(FLAG, 40)
    source = provider(server, tmp_path / "cache.json")
    assert refresh_until(source, lambda: source.toggles.rollout.get(FLAG) == 40)
    client = UnleashClient(
        url=f"{server.url}/api",
        app_name="parity-check",
        custom_headers={"Authorization": server.backend_token},
        disable_metrics=True,
        disable_registration=True,
        request_timeout=2,
        request_retries=0,
        cache_directory=str(tmp_path / "client-cache"),
        multiple_instance_mode=InstanceAllowType.SILENTLY_ALLOW,
    )
    client.initialize_client()
    try:
        flags = flags_for(source, tmp_path)
        ours = [flags.decide("reviews.list", user).backend == "candidate" for user in USERS]
        theirs = [client.is_enabled(FLAG, {"userId": user.user_id}) for user in USERS]
        assert ours == theirs
    finally:
        client.destroy()


def test_a_worker_starts_from_the_cache_while_unleash_is_down(server, tmp_path):
    server.rollout(FLAG, 100)
    cache = tmp_path / "cache.json"
    first = provider(server, cache)
    assert refresh_until(first, lambda: first.toggles.rollout.get(FLAG) == 100)
    assert cache.exists()
    offline = UnleashProvider(
        "http://127.0.0.1:9", server.backend_token, cache_file=cache, timeout_seconds=0.5
    )
    assert not offline.refresh()
    decision = flags_for(offline, tmp_path).decide("reviews.list", USERS[0])
    assert (decision.backend, decision.source, decision.reason) == ("candidate", "unleash", "stale")


def test_a_server_stopping_mid_run_leaves_the_last_known_toggles(server, tmp_path):
    # Runs last in this module: it stops the shared server.
    server.rollout(FLAG, 100)
    source = provider(server, tmp_path / "cache.json", refresh_seconds=0.2, stale_after=1.0)
    flags = flags_for(source, tmp_path)
    assert refresh_until(source, lambda: flags.decide("reviews.list", USERS[0]).backend == "candidate")
    source.start()
    try:
        server.stop()
        deadline = time.monotonic() + 10
        while source.last_error is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert source.last_error is not None, "the poller noticed the server is gone"
        while not source.stale and time.monotonic() < deadline:
            time.sleep(0.05)
        decision = flags.decide("reviews.list", USERS[0])
        assert (decision.backend, decision.reason) == ("candidate", "stale")
    finally:
        source.stop()
