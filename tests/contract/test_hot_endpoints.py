"""Every corpus case, against the monolith and the new service: same status, headers that matter, bytes."""

from __future__ import annotations

from collections import Counter

import pytest

from parity.corpus import PERSONAS, Case, hot_routes, load_cases
from parity.diff import compare
from tests.contract.conftest import Backends

CASES = load_cases()


def _report(case: Case, differences: list) -> str:
    request = case.request
    lines = [f"{case.id} ({case.route}): {request.method} {request.target} as {request.persona}"]
    lines += [f"  {difference}" for difference in differences]
    return "\n".join(lines)


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_candidate_answers_like_legacy(backends: Backends, case: Case) -> None:
    backends.setup(case)
    request_id = "contract-" + case.id.replace("/", ".")
    control = backends.control_answer(case, request_id)
    candidate = backends.candidate_answer(case, request_id)
    differences = compare(control, candidate, fresh_after=backends.fresh_after)
    assert not differences, _report(case, differences)


def test_corpus_covers_every_hot_route_and_persona() -> None:
    assert len(CASES) >= 150
    per_route = Counter(case.route for case in CASES)
    assert set(per_route) == set(hot_routes())
    assert {case.request.persona for case in CASES} == set(PERSONAS)
    methods = {case.request.method for case in CASES}
    assert {"GET", "POST", "PUT", "DELETE"} <= methods
