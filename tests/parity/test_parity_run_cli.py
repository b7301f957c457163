"""`parity run` over the whole corpus against a running monolith and both services, as QA runs it:
each side on its own copy of the seeded data, writes included; exit 0 and reports written.

The catalog cases go to the monolith on the candidate's copy: the catalog service answers from a view
that follows the writes a moment later (ADR 0018), so right after a case's setup it may not show it
yet; tests/contract compares the catalog service with the monolith once the events are applied."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path
from xml.etree import ElementTree as ET

import httpx
import pytest

from parity.corpus import Request, load_cases
from parity.runner import RunConfig, Runner
from tests.support.servers import legacy_env, legacy_server, seeded_copies, service_server

SECRET = "parity-cli-identity-secret"
ROOT = Path(__file__).resolve().parents[2]


def test_parity_run_over_the_whole_corpus_exits_0(tmp_path: Path):
    with ExitStack() as stack, seeded_copies(tmp_path, ("control", "candidate"), None, SECRET) as urls:
        control = stack.enter_context(
            legacy_server(legacy_env(tmp_path, urls["control"], SECRET), tmp_path / "a.log")
        )
        candidate_env = legacy_env(tmp_path, urls["candidate"], SECRET)
        setup = stack.enter_context(legacy_server(candidate_env, tmp_path / "b.log"))
        services = {
            name: stack.enter_context(service_server(name, candidate_env, tmp_path / f"{name}.log"))
            for name in ("reviews", "recommendations")
        }
        report = tmp_path / "report"
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "parity.cli",
                "run",
                "--control",
                control,
                "--setup-candidate",
                setup,
                "--candidate",
                f"reviews={services['reviews']}",
                "--candidate",
                f"recommendations={services['recommendations']}",
                "--candidate",
                f"catalog={setup}",
                "--writes",
                "--report",
                str(report),
            ],
            env={**os.environ, "IDENTITY_SECRET": SECRET, "COLUMNS": "160"},
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=300,
        )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 mismatch, 0 errors, 0 skipped" in result.stdout
    suite = ET.parse(report / "junit.xml").getroot().find("testsuite")
    assert suite is not None
    assert int(suite.get("tests", "0")) == len(load_cases()) >= 150
    assert suite.get("failures") == "0" and suite.get("errors") == "0"
    assert "all match" in (report / "parity.html").read_text()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--control", "http://127.0.0.1:9"], "give --gateway, or --control and at least one --candidate"),
        (["--control", "http://127.0.0.1:9", "--candidate", "nourl"], "--candidate takes CLUSTER=URL"),
        (["--control", "http://127.0.0.1:9", "--candidate", "reviews=http://127.0.0.1:9"], "cannot reach"),
    ],
)
def test_usage_and_connection_errors_exit_2(args, message):
    result = subprocess.run(
        [sys.executable, "-m", "parity.cli", "run", *args], capture_output=True, text=True, cwd=ROOT
    )
    assert result.returncode == 2
    assert message in result.stderr


def test_a_body_the_server_does_not_read_does_not_break_the_next_request(tmp_path: Path):
    """gunicorn answers a too-large body without reading it, drains 64 KiB, then closes the connection
    its answer called keep-alive: a request sent right after it on that pooled connection failed
    ("Server disconnected", about one time in two). The runner sends such a body on a connection of
    its own, so the pooled one stays good."""
    too_large = Request(
        method="POST",
        path="/api/v1/reviews",
        persona="demo1",
        body=b"x" * 1_100_000,
        content_type="application/json",
    )
    then = Request(method="DELETE", path="/api/v1/reviews", persona="demo1")

    async def back_to_back(runner: Runner) -> list[tuple[int, int]]:
        await runner.sign_in({"demo1"})
        return [
            ((await runner._send(base, too_large, "a")).status, (await runner._send(base, then, "b")).status)
            for _ in range(20)
        ]

    with ExitStack() as stack, seeded_copies(tmp_path, ("control",), None, SECRET) as urls:
        base = stack.enter_context(
            legacy_server(legacy_env(tmp_path, urls["control"], SECRET), tmp_path / "control.log")
        )
        config = RunConfig(control=base, candidates={"reviews": base}, identity_secret=SECRET)

        async def run() -> list[tuple[int, int]]:
            async with httpx.AsyncClient(timeout=10) as client:
                return await back_to_back(Runner(config, client))

        statuses = asyncio.run(run())
    assert statuses == [(413, 405)] * 20
