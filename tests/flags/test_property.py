"""Property: on random toggles (of the kinds we compile) and random contexts, our evaluator
answers exactly as UnleashClient does."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from UnleashClient import UnleashClient
from UnleashClient.cache import FileCache

from flags.unleash import Toggles

IDS = st.sampled_from(["", "1", "2", "42", "1001", "user-7", "김민준", "a:b", "99999"])
WORDS = st.sampled_from(["ios", "android", "web", "iOS", "3.2.1", "10", "7.5", "-1", "beta", ""])
PROPERTY = st.sampled_from(["platform", "appVersion", "tier"])


def _constraint() -> st.SearchStrategy[dict[str, Any]]:
    membership = st.fixed_dictionaries(
        {
            "contextName": st.sampled_from(["userId", "sessionId", "platform", "appVersion"]),
            "operator": st.sampled_from(["IN", "NOT_IN"]),
            "values": st.lists(st.one_of(IDS, WORDS), max_size=4),
            "inverted": st.booleans(),
        }
    )
    strings = st.fixed_dictionaries(
        {
            "contextName": st.sampled_from(["platform", "appVersion", "userId"]),
            "operator": st.sampled_from(["STR_CONTAINS", "STR_STARTS_WITH", "STR_ENDS_WITH"]),
            "values": st.lists(WORDS.filter(bool), min_size=1, max_size=3),
            "inverted": st.booleans(),
            "caseInsensitive": st.booleans(),
        }
    )
    numbers = st.fixed_dictionaries(
        {
            "contextName": st.sampled_from(["appVersion", "tier"]),
            "operator": st.sampled_from(["NUM_EQ", "NUM_GT", "NUM_GTE", "NUM_LT", "NUM_LTE"]),
            "value": st.sampled_from(["0", "1", "7.5", "10", "-1"]),
            "inverted": st.booleans(),
        }
    )
    return st.one_of(membership, strings, numbers)


def _strategy(feature: str) -> st.SearchStrategy[dict[str, Any]]:
    percent = st.integers(0, 100).map(str)
    kinds = st.one_of(
        st.builds(lambda: {"name": "default", "parameters": {}}),
        st.builds(
            lambda ids: {"name": "userWithId", "parameters": {"userIds": ", ".join(ids)}},
            st.lists(IDS.filter(bool), min_size=1, max_size=3),
        ),
        st.builds(
            lambda p, g: {"name": "gradualRolloutUserId", "parameters": {"percentage": p, "groupId": g}},
            percent,
            st.sampled_from([feature, "shared-group"]),
        ),
        st.builds(
            lambda p: {
                "name": "gradualRolloutSessionId",
                "parameters": {"percentage": p, "groupId": feature},
            },
            percent,
        ),
        st.builds(
            lambda p, s: {
                "name": "flexibleRollout",
                "parameters": {"rollout": p, "stickiness": s, "groupId": feature},
            },
            percent,
            st.sampled_from(["userId", "sessionId", "platform", "default"]),
        ),
        st.builds(
            lambda ips: {"name": "remoteAddress", "parameters": {"IPs": ", ".join(ips)}},
            st.lists(
                st.sampled_from(["10.0.0.1", "10.0.0.0/24", "192.168.1.7", "::1"]), min_size=1, max_size=3
            ),
        ),
    )
    return st.builds(lambda s, c: {**s, "constraints": c}, kinds, st.lists(_constraint(), max_size=2))


@st.composite
def documents(draw: st.DrawFn) -> dict[str, Any]:
    features = []
    for index in range(draw(st.integers(1, 3))):
        name = (
            f"route.prop.{index}.{draw(st.integers(0, 999))}"  # from the draw, so a failure replays exactly
        )
        features.append(
            {
                "name": name,
                "enabled": draw(st.booleans()),
                "strategies": draw(st.lists(_strategy(name), max_size=3)),
                "variants": [],
            }
        )
    return {"version": 1, "features": features}


@st.composite
def contexts(draw: st.DrawFn) -> dict[str, Any]:
    context: dict[str, Any] = {}
    user, session = draw(IDS), draw(IDS)
    # Default stickiness with neither id is random by design in Unleash; keep one id present.
    context["userId" if user or not session else "sessionId"] = user or session or "1"
    if session and user:
        context["sessionId"] = session
    if draw(st.integers(0, 5)) == 0:
        context["userId"] = ""  # present but empty: Unleash hashes it like any other value
    if draw(st.booleans()):
        context["remoteAddress"] = draw(
            st.sampled_from(["10.0.0.1", "10.0.0.77", "192.168.1.7", "::1", "8.8.8.8"])
        )
    properties = {name: draw(WORDS) for name in draw(st.lists(PROPERTY, unique=True, max_size=3))}
    if properties:
        context["properties"] = properties
    return context


@contextmanager
def unleash_client(document: dict[str, Any], directory: Path) -> Iterator[UnleashClient]:
    cache = FileCache("property", directory=str(directory))
    cache.bootstrap_from_dict(document)
    client = UnleashClient(
        url="http://127.0.0.1:9",  # never contacted: fetch_toggles=False
        app_name="property",
        cache=cache,
        disable_metrics=True,
        disable_registration=True,
        request_timeout=1,
        request_retries=0,
        multiple_instance_mode=_SILENT,
    )
    client.initialize_client(fetch_toggles=False)
    try:
        yield client
    finally:
        client.destroy()


from UnleashClient.utils import InstanceAllowType  # noqa: E402

_SILENT = InstanceAllowType.SILENTLY_ALLOW


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(document=documents(), samples=st.lists(contexts(), min_size=1, max_size=8))
def test_our_answers_match_unleash_client(
    tmp_path: Path, document: dict[str, Any], samples: list[dict[str, Any]]
):
    toggles = Toggles.compile(document)
    assert not toggles.fallback, "the generator only makes toggles we compile natively"
    with unleash_client(document, tmp_path) as client:
        for feature in document["features"]:
            for context in samples:
                ours = toggles.evaluate(feature["name"], context)
                assert ours is not None
                assert ours.enabled is client.is_enabled(feature["name"], context), (feature, context)


def test_percentages_select_the_same_users_as_unleash_client(tmp_path: Path):
    """Dense check of the percentage boundary: 2,000 users x several rollouts, every answer equal."""
    rollouts = [1, 10, 33, 50, 99]
    document = {
        "version": 1,
        "features": [
            {
                "name": f"route.rollout.{rollout}",
                "enabled": True,
                "strategies": [
                    {
                        "name": "flexibleRollout",
                        "parameters": {
                            "rollout": str(rollout),
                            "stickiness": "default",
                            "groupId": "route.reviews.list",
                        },
                        "constraints": [],
                    }
                ],
                "variants": [],
            }
            for rollout in rollouts
        ],
    }
    toggles = Toggles.compile(document)
    with unleash_client(document, tmp_path) as client:
        for rollout in rollouts:
            name = f"route.rollout.{rollout}"
            ours = [toggles.evaluate(name, {"userId": str(u)}).enabled for u in range(2000)]  # type: ignore[union-attr]
            theirs = [client.is_enabled(name, {"userId": str(u)}) for u in range(2000)]
            assert ours == theirs
            assert abs(sum(ours) / 2000 * 100 - rollout) < 4, "roughly the rollout share"
