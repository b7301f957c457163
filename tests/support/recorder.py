"""A backend that records what it receives (method, path, headers) as JSON lines, for gateway tests.

    RECORDER_LOG=/tmp/x.jsonl python -m uvicorn tests.support.recorder:app --port N

Every path answers 200 ``{"recorded": true}``; ``/slow`` waits 1 s first; ``/health`` is not recorded.
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    if scope["path"] != "/health":
        record = {
            "method": scope["method"],
            "path": scope["raw_path"].decode("latin-1"),
            "query": scope["query_string"].decode("latin-1"),
            "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope["headers"]],
            "body": body.decode("utf-8", "replace"),
        }
        with open(os.environ["RECORDER_LOG"], "a", encoding="utf-8") as log:
            log.write(json.dumps(record) + "\n")
    if scope["path"] == "/slow":
        await asyncio.sleep(1.0)
    payload = b'{"recorded":true}'
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
