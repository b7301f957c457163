"""The batched access log: valid JSON lines, flushed by the lifespan task and at shutdown."""

from __future__ import annotations

import asyncio
import io
import json

from gateway.accesslog import AccessLog


def test_lines_are_json_and_reach_the_stream_on_flush():
    stream = io.StringIO()
    log = AccessLog(stream)
    log.line("req-1", "GET", "reviews.list", "candidate", "reviews", 200, 0.0123456)
    assert stream.getvalue() == ""
    log.flush()
    (line,) = stream.getvalue().splitlines()
    assert json.loads(line) == {
        "request_id": "req-1",
        "method": "GET",
        "route": "reviews.list",
        "backend": "candidate",
        "cluster": "reviews",
        "status": 200,
        "duration_ms": 12.346,
    }


def test_disabled_log_writes_nothing():
    stream = io.StringIO()
    log = AccessLog(stream, enabled=False)
    log.line("req-1", "GET", "unmatched", "legacy", "legacy", 404, 0.001)
    log.flush()
    assert stream.getvalue() == ""


class _FlushSignal(io.StringIO):
    """A stream that tells the test when the log has flushed into it (no guessing how long that takes)."""

    def __init__(self) -> None:
        super().__init__()
        self.flushed = asyncio.Event()

    def flush(self) -> None:
        super().flush()
        self.flushed.set()


def test_the_flush_task_writes_periodically_and_on_cancel():
    stream = _FlushSignal()
    log = AccessLog(stream)

    async def run() -> None:
        task = asyncio.create_task(log.run())
        log.line("a", "GET", "r", "legacy", "legacy", 200, 0.001)
        await asyncio.wait_for(stream.flushed.wait(), timeout=5)  # a bound, not a target
        assert stream.getvalue().count("\n") == 1
        log.line("b", "GET", "r", "legacy", "legacy", 200, 0.001)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(run())
    assert [json.loads(line)["request_id"] for line in stream.getvalue().splitlines()] == ["a", "b"]
