"""The parity runner when a backend misbehaves at the HTTP level (respx): a refused connection, a
timeout, an answer that is not JSON. Each is a clear, reported outcome, never a crash of the run."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from xml.etree import ElementTree as ET

import httpx
import pytest
import respx
from typer.testing import CliRunner

from parity.cli import app
from parity.corpus import Case, Request
from parity.report import write_reports
from parity.runner import CaseResult, RunConfig, Runner, RunnerError

CONTROL, CANDIDATE, GATEWAY = "http://control.test", "http://reviews.test", "http://gateway.test"
PATH = "/api/v1/reviews/items/1"
SUMMARY = {"items": [], "page": 1}
TOKEN_URL = "/api/v1/auth/token"


def _case(name: str = "list", persona: str = "anonymous") -> Case:
    return Case(
        id=f"http/{name}", route="reviews.list", request=Request(method="GET", path=PATH, persona=persona)
    )


def _run(config: RunConfig, cases: list[Case]) -> list[CaseResult]:
    async def go() -> list[CaseResult]:
        async with httpx.AsyncClient(timeout=config.timeout) as client:
            return await Runner(config, client).run(cases)

    return asyncio.run(go())


DIRECT = RunConfig(control=CONTROL, candidates={"reviews": CANDIDATE})
THROUGH_GATEWAY = RunConfig(gateway=GATEWAY, admin_token="test-admin-token")


def _backend(side: str) -> respx.Route:
    """The route for one side through the gateway (it tells them apart by ``X-Force-Backend``)."""
    force = "legacy" if side == "control" else "candidate"
    return respx.get(f"{GATEWAY}{PATH}", headers={"x-force-backend": force})


@respx.mock
def test_a_candidate_that_refuses_connections_is_an_error_row_that_names_it():
    respx.get(f"{CONTROL}{PATH}").respond(json=SUMMARY)
    respx.get(f"{CANDIDATE}{PATH}").mock(side_effect=httpx.ConnectError)

    (result,) = _run(DIRECT, [_case()])

    assert result.status == "error"
    assert result.error is not None
    assert f"GET {CANDIDATE}{PATH}" in result.error
    assert "could not connect" in result.error


@pytest.mark.parametrize("side", ["control", "candidate"])
@pytest.mark.parametrize("timeout", [httpx.ReadTimeout, httpx.ConnectTimeout, httpx.PoolTimeout])
@respx.mock
def test_a_timeout_on_either_side_is_an_error_row_that_says_so(side: str, timeout: type[Exception]):
    other = "candidate" if side == "control" else "control"
    _backend(other).respond(json=SUMMARY)
    _backend(side).mock(side_effect=timeout)

    (result,) = _run(THROUGH_GATEWAY, [_case()])

    assert result.status == "error"
    assert result.error is not None
    assert f"GET {GATEWAY}{PATH}" in result.error
    assert "timed out" in result.error


@respx.mock
def test_a_non_json_answer_is_a_reported_mismatch_not_a_crash(tmp_path: Path):
    _backend("control").respond(json=SUMMARY)
    _backend("candidate").respond(502, text="<html><h1>502 Bad Gateway</h1></html>", content_type="text/html")

    results = _run(THROUGH_GATEWAY, [_case()])
    write_reports(tmp_path, results, THROUGH_GATEWAY)

    (result,) = results
    assert result.status == "mismatch"
    where = [d.where for d in result.differences]
    assert where[:2] == ["status", "header:content-type"]
    assert where[2].startswith("body bytes at offset")
    (row,) = json.loads((tmp_path / "parity.json").read_text())["cases"]
    assert row["status"] == "mismatch"
    assert "502 Bad Gateway" in row["candidate"]["body"]
    assert "502 Bad Gateway" in (tmp_path / "parity.html").read_text()


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(200, text="<html>sign in</html>", headers={"Content-Type": "text/html"}),
        httpx.Response(200, json={"detail": "no token here"}),
        httpx.Response(200, json=["access_token"]),
        httpx.Response(200, json={"access_token": "not-a-jwt"}),
        httpx.Response(200, json={"access_token": 42}),
    ],
    ids=["html", "no access_token", "a list", "not a JWT", "not a string"],
)
@respx.mock
def test_a_token_endpoint_answering_nonsense_stops_the_run_with_a_clear_message(answer: httpx.Response):
    respx.post(f"{GATEWAY}{TOKEN_URL}").mock(return_value=answer)

    with pytest.raises(RunnerError, match=r"persona demo1 cannot sign in at http://gateway\.test.*token"):
        _run(THROUGH_GATEWAY, [_case(persona="demo1")])


@respx.mock
def test_a_token_endpoint_that_times_out_stops_the_run_with_a_clear_message():
    respx.post(f"{GATEWAY}{TOKEN_URL}").mock(side_effect=httpx.ReadTimeout)

    with pytest.raises(RunnerError, match=r"cannot reach http://gateway\.test/api/v1/auth/token"):
        _run(THROUGH_GATEWAY, [_case(persona="demo1")])


# --- the command QA runs -----------------------------------------------------------------------------


def _corpus(tmp_path: Path, persona: str = "anonymous") -> Path:
    cases = tmp_path / "cases.yaml"
    cases.write_text(
        "group: http\ncases:\n"
        f"  - {{name: first, route: reviews.list, path: {PATH}, persona: {persona}}}\n"
        f"  - {{name: second, route: reviews.list, path: {PATH}, query: {{page: 2}}, persona: {persona}}}\n"
    )
    return cases


def _parity_run(tmp_path: Path, persona: str = "anonymous") -> tuple[int, str, Path]:
    report = tmp_path / "report"
    corpus = str(_corpus(tmp_path, persona))
    arguments = ["run", corpus, "--control", CONTROL, "--candidate", f"reviews={CANDIDATE}"]
    result = CliRunner().invoke(
        app,
        [*arguments, "--report", str(report)],
        env={"IDENTITY_SECRET": "parity-http-secret", "COLUMNS": "200"},
    )
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output, report


@respx.mock
def test_parity_run_writes_an_error_row_per_case_when_the_candidate_is_down(tmp_path: Path):
    respx.get(url__startswith=f"{CONTROL}{PATH}").respond(json=SUMMARY)
    respx.get(url__startswith=f"{CANDIDATE}{PATH}").mock(side_effect=httpx.ConnectError)

    code, output, report = _parity_run(tmp_path)

    assert code == 2, output
    assert "2 errors" in output
    assert f"error http/first: GET {CANDIDATE}{PATH} could not connect" in output
    rows = json.loads((report / "parity.json").read_text())["cases"]
    assert [(row["id"], row["status"]) for row in rows] == [("http/first", "error"), ("http/second", "error")]
    assert all(CANDIDATE in row["error"] for row in rows)
    errors = ET.parse(report / "junit.xml").getroot().iter("error")
    assert [CANDIDATE in (error.get("message") or "") for error in errors] == [True, True]


@respx.mock
def test_parity_run_says_why_when_a_persona_cannot_sign_in(tmp_path: Path):
    respx.post(f"{CONTROL}{TOKEN_URL}").respond(
        200, text="<html>maintenance</html>", content_type="text/html"
    )

    code, output, _ = _parity_run(tmp_path, persona="demo1")

    assert code == 2
    assert "parity: persona demo1 cannot sign in at http://control.test/api/v1/auth/token" in output
    assert "Traceback" not in output
