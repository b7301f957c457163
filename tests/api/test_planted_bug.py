"""The schemathesis run fails on a handler that answers a field of the wrong type (the acceptance's
planted bug), and passes on the same handler answering it right: the run can fail."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from tests.support.api_fuzz import fuzz

SUMMARY = {"item_id": 1, "review_count": 2, "rating_average": 4.5, "distribution": dict.fromkeys("12345", 0)}


@contextlib.contextmanager
def summary_server(review_count: object) -> Iterator[str]:
    """``GET /api/v1/reviews/items/{id}/summary`` answered with ``review_count`` as given."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps({**SUMMARY, "review_count": review_count}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(("review_count", "fails"), [("2", True), (2, False)], ids=["planted-bug", "correct"])
def test_a_wrong_typed_field_fails_the_run(review_count: object, fails: bool) -> None:
    with summary_server(review_count) as url, requests.Session() as session:
        failures = fuzz(url, session=session, operation_ids=["reviews.summary"], max_examples=5)
    assert bool(failures) is fails, failures
    if fails:
        assert "Response violates schema" in failures[0]
        assert '"2" is not of type "integer"' in failures[0]
        assert "/components/schemas/ReviewSummary/properties/review_count" in failures[0]
