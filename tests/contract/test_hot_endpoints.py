"""Every corpus case, against the monolith and the new service: same status, headers that matter, bytes,
and the same events in the outbox (type, item key, version, payload; ids and timestamps aside)."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from events import payloads
from parity.corpus import PERSONAS, Case, Request, hot_routes, load_cases
from parity.diff import compare
from tests.contract.conftest import Backends
from tests.support.openapi import observation_problems
from tests.support.outbox import Written, events_after, last_event_id

CASES = load_cases()


def _report(case: Case, differences: list) -> str:
    request = case.request
    lines = [f"{case.id} ({case.route}): {request.method} {request.target} as {request.persona}"]
    lines += [f"  {difference}" for difference in differences]
    return "\n".join(lines)


def _answers_and_events(backends: Backends, case: Case) -> list[Written]:
    """Send ``case`` to both backends (its setup first); assert the answers and the events each backend
    wrote for it agree; return those events."""
    backends.setup(case)
    urls = backends.database_urls
    marks = {side: last_event_id(url) for side, url in urls.items()}
    request_id = "contract-" + case.id.replace("/", ".")
    control = backends.control_answer(case, request_id)
    candidate = backends.candidate_answer(case, request_id)
    differences = compare(control, candidate, fresh_after=backends.fresh_after)
    assert not differences, _report(case, differences)
    for observed in (control, candidate):  # and both answers as the API contract documents them
        assert not (found := observation_problems(case.request.method, case.request.target, observed)), found
    written = events_after(urls["control"], marks["control"])
    assert events_after(urls["candidate"], marks["candidate"]) == written, (
        f"{case.id}: the backends wrote different events"
    )
    return written


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_candidate_answers_like_legacy(backends: Backends, case: Case) -> None:
    _answers_and_events(backends, case)


def test_corpus_covers_every_hot_route_and_persona() -> None:
    assert len(CASES) >= 150
    per_route = Counter(case.route for case in CASES)
    assert set(per_route) == set(hot_routes())
    assert {case.request.persona for case in CASES} == set(PERSONAS)
    methods = {case.request.method for case in CASES}
    assert {"GET", "POST", "PUT", "DELETE"} <= methods


def _case(name: str, route: str, method: str, path: str, persona: str, body: object = None) -> Case:
    encoded = None if body is None else json.dumps(body).encode()
    request = Request(
        method=method,
        path=path,
        persona=persona,
        body=encoded,
        content_type="application/json" if encoded else None,
    )
    return Case(id=f"events/{name}", route=route, request=request)


def test_every_write_route_writes_the_same_events_on_both_backends(backends: Backends) -> None:
    """A review created, voted helpful and deleted, each served by both backends (after the corpus, on
    an item whose reviews it does not read): one event each, identical, with the item's next versions."""
    body = {"item_id": 39, "rating": 2, "body": "event parity"}
    created = _answers_and_events(
        backends, _case("create", "reviews.create", "POST", "/api/v1/reviews", "demo5", body)
    )
    assert [event.type for event in created] == [payloads.REVIEW_CREATED]
    review_id = json.loads(created[0].payload)["review"]["id"]
    helpful = _answers_and_events(
        backends,
        _case("helpful", "reviews.helpful", "PUT", f"/api/v1/reviews/{review_id}/helpful", "demo4"),
    )
    again = _answers_and_events(
        backends,
        _case("helpful-again", "reviews.helpful", "PUT", f"/api/v1/reviews/{review_id}/helpful", "demo4"),
    )
    deleted = _answers_and_events(
        backends, _case("delete", "reviews.delete", "DELETE", f"/api/v1/reviews/{review_id}", "demo5")
    )
    assert [event.type for event in helpful] == [payloads.REVIEW_HELPFUL]
    assert again == [], "a repeated vote changes nothing and writes no event"
    assert [event.type for event in deleted] == [payloads.REVIEW_DELETED]
    versions = [event.version for event in (*created, *helpful, *deleted)]
    assert versions == list(range(versions[0], versions[0] + 3))
    assert json.loads(helpful[0].payload)["review"] == {"id": review_id, "helpful_count": 1}
    before, after = (json.loads(event.payload)["item"] for event in (created[0], deleted[0]))
    assert after["review_count"] == before["review_count"] - 1
    assert after["distribution"]["2"] == before["distribution"]["2"] - 1
