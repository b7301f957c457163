"""The parity runner against a control and a candidate that plants one difference per path."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from xml.etree import ElementTree as ET

import httpx
import pytest

from parity.corpus import Case, Request
from parity.report import write_reports
from parity.runner import CaseResult, RunConfig, Runner
from tests.conftest import IN_CI
from tests.support.servers import free_port, serve

PATHS = ["/identical", "/changed", "/missing", "/reordered", "/status", "/content-type"]


@pytest.fixture(scope="module")
def backends(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    work = tmp_path_factory.mktemp("fake")
    urls = {}
    with ExitStack() as stack:
        for mode in ("control", "candidate"):
            port = free_port()
            command = [
                sys.executable,
                "-m",
                "uvicorn",
                "tests.support.fake_backend:app",
                "--port",
                str(port),
                "--log-level",
                "warning",
            ]
            urls[mode] = stack.enter_context(
                serve(command, {**os.environ, "FAKE_MODE": mode}, port, work / f"{mode}.log")
            )
        yield urls


def _run(backends: dict[str, str], **options: object) -> list[CaseResult]:
    cases = [
        Case(
            id=f"planted{path.replace('/', '.')}",
            route="reviews.list",
            request=Request(method="GET", path=path),
        )
        for path in PATHS
    ]
    config = RunConfig(control=backends["control"], candidates={"reviews": backends["candidate"]}, **options)  # type: ignore[arg-type]

    async def go() -> list[CaseResult]:
        async with httpx.AsyncClient() as client:
            return await Runner(config, client).run(cases)

    return asyncio.run(go())


def test_each_planted_difference_is_reported_with_its_place(backends):
    results = {r.case.request.path: r for r in _run(backends)}
    assert results["/identical"].status == "match"
    assert [d.where for d in results["/changed"].differences] == ["body:/name"]
    assert [(d.where, d.candidate) for d in results["/missing"].differences] == [("body:/name", "(missing)")]
    assert [d.where for d in results["/reordered"].differences] == ["body:/items/0", "body:/items/2"]
    assert [d.where for d in results["/status"].differences] == ["status"]
    assert [d.where for d in results["/content-type"].differences] == ["header:content-type"]


def test_a_field_random_on_both_sides_is_noise_not_a_mismatch(backends):
    for result in _run(backends):
        assert "body:/nonce" in {d.where for d in result.noise}
        assert "body:/nonce" not in {d.where for d in result.differences}


def test_without_noise_cancellation_the_random_field_is_a_mismatch(backends):
    results = {r.case.request.path: r for r in _run(backends, noise=False)}
    assert results["/identical"].status == "mismatch"
    assert [d.where for d in results["/identical"].differences] == ["body:/nonce"]


def test_identical_backends_give_zero_mismatches(backends):
    config_backends = {"control": backends["control"], "candidate": backends["control"]}
    assert {r.status for r in _run(config_backends)} == {"match"}


def test_reports_are_written_and_the_html_renders_in_chromium(backends, tmp_path):
    results = _run(backends)
    config = RunConfig(control=backends["control"], candidates={"reviews": backends["candidate"]})
    json_path, junit_path, html_path = write_reports(tmp_path, results, config)
    assert json_path.exists()
    suite = ET.parse(junit_path).getroot().find("testsuite")
    assert suite is not None and suite.get("tests") == "6" and suite.get("failures") == "5"
    page = html_path.read_text()
    assert "body:/name" in page and "curl -i -X GET" in page and "differences found" in page
    chromium = shutil.which("chromium")
    if chromium is None:
        if IN_CI:
            pytest.fail("chromium is required under CI=true (make browser-deps)")
        pytest.skip("chromium is not installed (make browser-deps)")
    shot = tmp_path / "parity.png"
    subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--screenshot={shot}",
            "--window-size=1280,1400",
            html_path.as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    assert shot.stat().st_size > 10_000
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
