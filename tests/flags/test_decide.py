"""The decision: precedence, overrides with percentages and expiry, stale providers, errors."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from flags import EvaluationContext, Flags, Override
from flags.overrides import FileOverrideStore
from flags.providers import FileFlagProvider
from flags.unleash import Toggles
from tests.support.waiting import eventually


def toggle(route: str, *, enabled: bool = True, rollout: int = 100) -> dict:
    return {
        "name": f"route.{route}",
        "enabled": enabled,
        "strategies": [
            {
                "name": "flexibleRollout",
                "parameters": {"rollout": str(rollout), "stickiness": "default", "groupId": f"route.{route}"},
                "constraints": [],
            }
        ],
        "variants": [],
    }


def write_flags(path: Path, *toggles: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"version": 1, "features": list(toggles)}))
    tmp.replace(path)


class FakeUnleash:
    """Stands in for the Unleash provider's snapshot (the provider itself is tested against a real server)."""

    name = "unleash"

    def __init__(self, *toggles: dict, stale: bool = False) -> None:
        self.toggles = Toggles.compile({"version": 1, "features": list(toggles)})
        self.stale = stale

    def start(self) -> None: ...

    def stop(self) -> None: ...


@pytest.fixture
def paths(tmp_path: Path) -> dict[str, Path]:
    return {
        "flags": tmp_path / "flags.json",
        "overrides": tmp_path / "overrides.json",
        "audit": tmp_path / "audit.jsonl",
    }


def flags_with(paths, *providers) -> Flags:
    return Flags(overrides=FileOverrideStore(paths["overrides"], paths["audit"]), providers=list(providers))


USER = EvaluationContext(user_id="42")


def test_no_flag_anywhere_means_legacy_by_default(paths):
    decision = flags_with(paths, FileFlagProvider(paths["flags"])).decide("reviews.list", USER)
    assert (decision.backend, decision.reason, decision.source, decision.flag) == (
        "legacy",
        "default",
        "default",
        "route.reviews.list",
    )


def test_file_flag_enabled_means_candidate(paths):
    write_flags(paths["flags"], toggle("reviews.list"), toggle("reviews.summary", enabled=False))
    flags = flags_with(paths, FileFlagProvider(paths["flags"]))
    on = flags.decide("reviews.list", USER)
    off = flags.decide("reviews.summary", USER)
    assert (on.backend, on.source, on.reason) == ("candidate", "file", "split")
    assert (off.backend, off.reason) == ("legacy", "disabled")


def test_unleash_wins_over_the_file(paths):
    write_flags(paths["flags"], toggle("reviews.list", enabled=False))
    flags = flags_with(paths, FakeUnleash(toggle("reviews.list")), FileFlagProvider(paths["flags"]))
    assert flags.decide("reviews.list", USER).source == "unleash"
    assert flags.decide("reviews.list", USER).backend == "candidate"


def test_the_file_answers_for_flags_unleash_does_not_have(paths):
    write_flags(paths["flags"], toggle("reviews.detail"))
    flags = flags_with(paths, FakeUnleash(toggle("reviews.list")), FileFlagProvider(paths["flags"]))
    assert flags.decide("reviews.detail", USER).source == "file"


def test_a_stale_provider_still_answers_and_says_so(paths):
    flags = flags_with(paths, FakeUnleash(toggle("reviews.list"), stale=True))
    decision = flags.decide("reviews.list", USER)
    assert (decision.backend, decision.reason) == ("candidate", "stale")


def test_override_beats_every_provider(paths):
    flags = flags_with(paths, FakeUnleash(toggle("reviews.list")))
    override = Override(
        route="reviews.list", backend="legacy", reason="bad deploy", actor="ops", at=time.time()
    )
    flags.overrides.apply([("reviews.list", override)], actor="ops", reason="bad deploy")
    decision = flags.decide("reviews.list", USER)
    assert (decision.backend, decision.reason, decision.source) == ("legacy", "override", "override")


def test_override_percentage_is_sticky_per_user(paths):
    flags = flags_with(paths)
    override = Override(
        route="reviews.list", backend="candidate", percent=30, reason="canary", actor="ops", at=0
    )
    flags.overrides.apply([("reviews.list", override)], actor="ops", reason="canary")
    users = [EvaluationContext(user_id=str(n)) for n in range(1000)]
    first = [flags.decide("reviews.list", user).backend for user in users]
    second = [flags.decide("reviews.list", user).backend for user in users]
    assert first == second
    assert 250 < first.count("candidate") < 350


def test_expired_override_no_longer_applies(paths):
    flags = flags_with(paths)
    past = time.time() - 1
    override = Override(
        route="reviews.list", backend="candidate", reason="x", actor="ops", at=past - 60, expires_at=past
    )
    flags.overrides.apply([("reviews.list", override)], actor="ops", reason="x")
    assert flags.decide("reviews.list", USER).source == "default"


def test_a_broken_provider_gives_legacy_with_reason_error(paths):
    class Broken(FakeUnleash):
        @property
        def toggles(self):  # type: ignore[override]
            raise RuntimeError("boom")

        @toggles.setter
        def toggles(self, value):
            pass

    decision = flags_with(paths, Broken()).decide("reviews.list", USER)
    assert (decision.backend, decision.reason) == ("legacy", "error")


def test_file_provider_hot_reloads_and_keeps_the_last_good_file(paths):
    write_flags(paths["flags"], toggle("reviews.list", enabled=False))
    provider = FileFlagProvider(paths["flags"], poll_seconds=0.01)
    flags = flags_with(paths, provider)
    provider.start()
    try:
        write_flags(paths["flags"], toggle("reviews.list"))
        assert eventually(lambda: flags.decide("reviews.list", USER).backend == "candidate")
        paths["flags"].write_text("{not json")
        time.sleep(0.1)
        assert provider.error is not None
        assert flags.decide("reviews.list", USER).backend == "candidate", "last good file still answers"
    finally:
        provider.stop()


def test_a_document_the_unleash_engine_cannot_read_keeps_the_last_good_flags(paths):
    """Found by fuzz/unleash_flags.py: a strategy without ``name`` goes to Unleash's engine, which raised
    KeyError out of Toggles.compile; the watcher thread died and no later change was picked up."""
    nameless = {"name": "route.reviews.list", "enabled": True, "strategies": [{"parameters": {}}]}
    with pytest.raises(ValueError, match="the Unleash engine cannot read the document"):
        Toggles.compile({"version": 1, "features": [nameless]})
    write_flags(paths["flags"], toggle("reviews.list"))
    provider = FileFlagProvider(paths["flags"], poll_seconds=0.01)
    flags = flags_with(paths, provider)
    provider.start()
    try:
        assert flags.decide("reviews.list", USER).backend == "candidate"
        write_flags(paths["flags"], nameless)
        assert eventually(lambda: provider.error is not None and "Unleash engine" in provider.error)
        assert flags.decide("reviews.list", USER).backend == "candidate", "last good file still answers"
        write_flags(paths["flags"], toggle("reviews.list", enabled=False))
        assert eventually(lambda: flags.decide("reviews.list", USER).backend == "legacy"), "still watching"
    finally:
        provider.stop()


def test_describe_reports_share_and_source(paths):
    write_flags(paths["flags"], toggle("reviews.list", rollout=25))
    flags = flags_with(paths, FileFlagProvider(paths["flags"]))
    state = flags.describe("reviews.list")
    assert (state.backend, state.percent, state.source, state.reason) == ("split", 25, "file", "split")
    assert flags.describe("reviews.mine").source == "default"


def test_context_maps_to_unleash_fields():
    context = EvaluationContext(
        user_id="7", session_id="d-1", remote_address="10.0.0.1", app_version="3.1", platform="ios"
    )
    assert context.unleash() == {
        "userId": "7",
        "sessionId": "d-1",
        "remoteAddress": "10.0.0.1",
        "properties": {"appVersion": "3.1", "platform": "ios"},
    }
    assert EvaluationContext().unleash() == {}
