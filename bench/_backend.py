"""A fast fixed backend for client benchmarks: every request gets the same ~1 KB JSON (raw ASGI)."""

from __future__ import annotations

import json
from typing import Any

BODY = json.dumps({"items": [{"id": n, "name": f"item {n}", "price": 1000 + n} for n in range(22)]}).encode()
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})
