"""A candidate in front of a real service that can go wrong on demand, for rollout tests and the bench.

    UPSTREAM=http://127.0.0.1:8002 python -m uvicorn tests.support.altering_proxy:app --port N

Forwards every request to ``UPSTREAM`` (headers, body and answer as they are). ``POST /_proxy/mode``
``{"mode": "healthy" | "alter" | "fail", "every": N, "field": "rating_average"}`` changes what it
does from then on: ``alter`` changes ``field`` of every Nth JSON answer that has it (the rest pass
byte for byte), ``fail`` answers every Nth request with a 500 envelope. ``GET /_proxy/mode`` shows
the mode and how many answers it altered or failed. ``ALTER_EVERY``/``ALTER_FIELD``/``PROXY_MODE``
set the starting mode.
"""

from __future__ import annotations

import itertools
import json
import os
from typing import Any

import httpx

_HOP = {b"host", b"connection", b"keep-alive", b"transfer-encoding", b"content-length"}
state: dict[str, Any] = {
    "mode": os.environ.get("PROXY_MODE", "healthy"),
    "every": int(os.environ.get("ALTER_EVERY", "1")),
    "field": os.environ.get("ALTER_FIELD", "rating_average"),
    "altered": 0,
    "failed": 0,
}
_counter = itertools.count(1)
_client: httpx.AsyncClient | None = None


async def _send(send: Any, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _alter(body: bytes) -> bytes | None:
    try:
        document = json.loads(body)
    except ValueError:
        return None
    if not isinstance(document, dict) or state["field"] not in document:
        return None
    document[state["field"]] = "altered by the test proxy"
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    global _client
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                _client = httpx.AsyncClient(base_url=os.environ["UPSTREAM"], timeout=10)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if _client is not None:
                    await _client.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    json_type = [(b"content-type", b"application/json")]
    if scope["path"] == "/_proxy/mode":
        if scope["method"] == "POST":
            state.update(json.loads(body))
            state["altered"] = state["failed"] = 0
        await _send(send, 200, json.dumps(state).encode(), json_type)
        return
    n = next(_counter)
    wrong = n % max(1, int(state["every"])) == 0
    if state["mode"] == "fail" and wrong and scope["path"] != "/health":
        state["failed"] += 1
        error = {
            "error": {
                "code": "internal_error",
                "message": "The test proxy failed on purpose.",
                "request_id": "",
            }
        }
        await _send(send, 500, json.dumps(error).encode(), json_type)
        return
    assert _client is not None
    headers = [(k, v) for k, v in scope["headers"] if k.lower() not in _HOP]
    target = scope["raw_path"].decode("latin-1") + (
        "?" + scope["query_string"].decode("latin-1") if scope["query_string"] else ""
    )
    answer = await _client.request(scope["method"], target, headers=headers, content=body)
    content = answer.content
    if state["mode"] == "alter" and wrong and (altered := _alter(content)) is not None:
        content = altered
        state["altered"] += 1
    out = [
        (k.encode("latin-1"), v.encode("latin-1"))
        for k, v in answer.headers.items()
        if k.encode() not in _HOP
    ]
    await _send(send, answer.status_code, content, out)
