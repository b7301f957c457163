"""Captured traffic: JSON lines the gateway writes for sampled requests, replayed as cases.

Line: ``{"route": "reviews.list", "method": "GET", "path": "/api/v1/reviews/items/1",
"query": "size=5", "persona": "demo1" | "anonymous" | "user:123", "at": 1790000000.0}``.
Tokens, passwords and bodies are never captured; ``user:<id>`` personas replay only in
direct mode (the runner signs the identity assertion for that id).
"""

from __future__ import annotations

import json
from pathlib import Path

from parity.corpus import Case, CorpusError, Request, hot_routes


def load_capture(path: Path) -> list[Case]:
    cases = []
    routes = hot_routes()
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            route, method, target_path = data["route"], str(data["method"]).upper(), data["path"]
        except (ValueError, KeyError, TypeError) as exc:
            raise CorpusError(f"{path}:{number}: not a capture line ({exc})") from exc
        if route not in routes or not str(target_path).startswith("/"):
            raise CorpusError(f"{path}:{number}: unknown route {route!r} or bad path")
        persona = str(data.get("persona", "anonymous"))
        request = Request(method=method, path=target_path, query=str(data.get("query", "")), persona=persona)
        cases.append(Case(id=f"capture/{path.stem}/{number}", route=route, request=request))
    return cases
