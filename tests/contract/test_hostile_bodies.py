"""Hostile JSON bodies against the monolith and the reviews service: the same 400, never a 5xx.

Every body of ``tests/support/hostile_bodies.py`` goes to each hot endpoint that takes one; both
backends must answer ``400 bad_request`` with the corpus's message and byte-identical bodies
(docs/api.md, "Request bodies"). Nothing here writes: each body is refused before the write.
"""

from __future__ import annotations

import json
import re

import pytest

from parity.corpus import Case, Request
from parity.diff import Observation, compare
from tests.contract.conftest import Backends
from tests.support.hostile_bodies import HOSTILE, TOO_DEEP, Hostile
from tests.support.openapi import observation_problems

CREATE = "/api/v1/reviews"
# Representatives of each rule, for the cases that check what is decided before the body is read.
SAMPLES = [h for h in HOSTILE if h.name in {"open-arrays-100k", "lone-high-surrogate", "invalid-utf8-byte"}]


def _case(name: str, route: str, request: Request) -> Case:
    return Case(id=f"hostile/{name}", route=route, request=request)


def _request_id(case: Case) -> str:
    return re.sub(r"[^A-Za-z0-9._:-]", ".", case.id)[:128]  # a request id the backends echo as sent


def _both(backends: Backends, case: Case) -> tuple[Observation, Observation]:
    """Both answers, asserted identical (status, headers that matter, bytes)."""
    request_id = _request_id(case)
    control = backends.control_answer(case, request_id)
    candidate = backends.candidate_answer(case, request_id)
    assert control.status < 500, (case.id, control)
    assert candidate.status < 500, (case.id, candidate)
    differences = compare(control, candidate, fresh_after=backends.fresh_after)
    assert not differences, "\n".join([case.id, *map(str, differences)])
    assert not (found := observation_problems(case.request.method, case.request.target, control)), found
    return control, candidate


def _error(observation: Observation) -> dict[str, str]:
    envelope = json.loads(observation.body)
    assert list(envelope) == ["error"]
    assert list(envelope["error"]) == ["code", "message", "request_id"]
    return dict(envelope["error"])


def _create(
    hostile: Hostile, *, persona: str = "demo1", content_type: str | None = "application/json"
) -> Request:
    return Request(method="POST", path=CREATE, persona=persona, body=hostile.body, content_type=content_type)


@pytest.mark.parametrize("hostile", HOSTILE, ids=[h.name for h in HOSTILE])
def test_create_refuses_the_body_with_the_same_400(backends: Backends, hostile: Hostile) -> None:
    case = _case(f"create-{hostile.name}", "reviews.create", _create(hostile))
    control, _ = _both(backends, case)
    assert control.status == 400
    assert control.headers["content-type"] == "application/json"
    assert _error(control) == {
        "code": "bad_request",
        "message": hostile.message,
        "request_id": _request_id(case),
    }


@pytest.mark.parametrize("content_type", ["application/json; charset=utf-8", "Application/JSON"])
def test_json_media_type_parameters_do_not_change_the_answer(backends: Backends, content_type: str) -> None:
    hostile = SAMPLES[0]
    case = _case(
        f"create-media-type-{content_type}", "reviews.create", _create(hostile, content_type=content_type)
    )
    control, _ = _both(backends, case)
    assert (control.status, _error(control)["message"]) == (400, TOO_DEEP)


@pytest.mark.parametrize("hostile", SAMPLES, ids=[h.name for h in SAMPLES])
@pytest.mark.parametrize(
    ("persona", "content_type", "status", "code"),
    [
        ("anonymous", "application/json", 401, "unauthenticated"),  # authentication before input
        ("demo1", "text/plain", 415, "unsupported_media_type"),  # the media type before the body
        ("demo1", None, 415, "unsupported_media_type"),
        ("demo1", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
    ],
    ids=["anonymous", "text-plain", "no-content-type", "form"],
)
def test_what_is_decided_before_the_body_is_read(
    backends: Backends, hostile: Hostile, persona: str, content_type: str | None, status: int, code: str
) -> None:
    request = _create(hostile, persona=persona, content_type=content_type)
    case = _case(f"create-{hostile.name}-{persona}-{content_type}", "reviews.create", request)
    control, _ = _both(backends, case)
    assert (control.status, _error(control)["code"]) == (status, code)


@pytest.mark.parametrize("hostile", SAMPLES, ids=[h.name for h in SAMPLES])
def test_helpful_ignores_its_body(backends: Backends, hostile: Hostile) -> None:
    # reviews.helpful reads no body; an unknown review keeps this from voting.
    request = Request(
        method="PUT",
        path="/api/v1/reviews/999999/helpful",
        persona="demo1",
        body=hostile.body,
        content_type="application/json",
    )
    control, _ = _both(backends, _case(f"helpful-{hostile.name}", "reviews.helpful", request))
    assert (control.status, _error(control)["code"]) == (404, "not_found")
