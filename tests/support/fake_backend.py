"""A fake JSON backend for parity runner tests: FAKE_MODE=control answers the reference documents,
FAKE_MODE=candidate plants one difference per path. Every answer has a field that is random on every
call (noise for the runner to cancel).

    FAKE_MODE=candidate python -m uvicorn tests.support.fake_backend:app --port N
"""

from __future__ import annotations

import json
import os
import uuid
from typing import Any


def _document(path: str, candidate: bool) -> tuple[int, str, dict[str, Any]]:
    document: dict[str, Any] = {"id": 1, "name": "alpha", "items": [1, 2, 3], "nonce": uuid.uuid4().hex}
    status, content_type = 200, "application/json"
    if candidate:
        if path.endswith("/changed"):
            document["name"] = "beta"
        elif path.endswith("/missing"):
            del document["name"]
        elif path.endswith("/reordered"):
            document["items"] = [3, 2, 1]
        elif path.endswith("/status"):
            status = 500
        elif path.endswith("/content-type"):
            content_type = "text/plain"
    return status, content_type, document


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    status, content_type, document = _document(scope["path"], os.environ.get("FAKE_MODE") == "candidate")
    body = json.dumps(document, separators=(",", ":")).encode()
    headers = [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
