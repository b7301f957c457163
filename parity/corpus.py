"""The shared request corpus: one YAML file per route group, cases replayed in file order.

File format::

    group: reviews-read            # a name for the file's cases
    cases:
      - name: list-anonymous-first-page
        route: reviews.list        # a route id of the gateway's route table
        method: GET                # default GET
        path: /api/v1/reviews/items/1
        query: {page: 1, size: 5}  # a mapping, or a raw query string ("page=%ff")
        persona: anonymous         # anonymous | demo1..demo5 | forged (a bad signature)
        body: {item_id: 1}         # JSON body (sent as application/json) ...
        raw_body: '{"item_id": '   # ... or exact text
        content_type: text/plain   # overrides the body's content type
        setup:                     # requests sent to legacy before the case, on every database copy
          - {method: POST, path: /api/v1/items/7/views, persona: demo4}

Cases run in order, so a write is followed by the reads that should see it.
The hot routes are the gateway's route table (``ROUTES_FILE``, default the shipped
``gateway/routes.toml``, read through ``flags.routes_file``): a route added there is accepted here.
Long strings: ``!repeat [text, count]`` is ``text`` repeated ``count`` times.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import yaml

from flags.routes_file import RoutesFileError, route_ids, routes_file

CASES_DIR = Path(__file__).parent / "cases"
PERSONAS = ("anonymous", "forged", "demo1", "demo2", "demo3", "demo4", "demo5")
_CASE_KEYS = {
    "name",
    "route",
    "method",
    "path",
    "query",
    "persona",
    "body",
    "raw_body",
    "content_type",
    "setup",
}
_STEP_KEYS = {"method", "path", "query", "persona", "body", "raw_body", "content_type"}


class _Loader(yaml.SafeLoader):
    """SafeLoader plus ``!repeat [text, count]`` for long bodies."""


def _repeat(loader: yaml.SafeLoader, node: yaml.Node) -> str:
    text, count = loader.construct_sequence(node)  # type: ignore[arg-type]
    return str(text) * int(count)


_Loader.add_constructor("!repeat", _repeat)


class CorpusError(Exception):
    """A corpus file is malformed; the message names the file and case."""


def hot_routes() -> tuple[str, ...]:
    """The route ids of the route table this environment's gateway loads."""
    try:
        return route_ids(routes_file())
    except RoutesFileError as exc:
        raise CorpusError(str(exc)) from exc


@dataclass(frozen=True, kw_only=True, slots=True)
class Request:
    method: str
    path: str
    query: str = ""
    persona: str = "anonymous"
    body: bytes | None = None
    content_type: str | None = None

    @property
    def target(self) -> str:
        """Path plus query string, as on the request line."""
        return f"{self.path}?{self.query}" if self.query else self.path


@dataclass(frozen=True, kw_only=True, slots=True)
class Case:
    id: str
    route: str
    request: Request
    setup: tuple[Request, ...] = field(default_factory=tuple)


def _request(raw: Mapping[str, Any], where: str) -> Request:
    method = str(raw.get("method", "GET")).upper()
    path = raw.get("path")
    if not isinstance(path, str) or not path.startswith("/"):
        raise CorpusError(f"{where}: path must start with /")
    query = raw.get("query", "")
    if isinstance(query, Mapping):
        query = urlencode({str(k): str(v) for k, v in query.items()})
    elif not isinstance(query, str):
        raise CorpusError(f"{where}: query must be a mapping or a string")
    persona = raw.get("persona", "anonymous")
    if persona not in PERSONAS:
        raise CorpusError(f"{where}: persona must be one of {', '.join(PERSONAS)}")
    body: bytes | None = None
    content_type = raw.get("content_type")
    if "body" in raw and "raw_body" in raw:
        raise CorpusError(f"{where}: give body or raw_body, not both")
    if "body" in raw:
        body = json.dumps(raw["body"], ensure_ascii=False).encode()
        content_type = content_type or "application/json"
    elif "raw_body" in raw:
        body = str(raw["raw_body"]).encode()
    return Request(
        method=method, path=path, query=query, persona=persona, body=body, content_type=content_type
    )


def _case(raw: Any, group: str, where: str, routes: Collection[str]) -> Case:
    if not isinstance(raw, Mapping):
        raise CorpusError(f"{where}: a case must be a mapping")
    unknown = set(raw) - _CASE_KEYS
    if unknown:
        raise CorpusError(f"{where}: unknown keys {sorted(unknown)}")
    name, route = raw.get("name"), raw.get("route")
    if not isinstance(name, str) or not name:
        raise CorpusError(f"{where}: every case needs a name")
    if not isinstance(route, str) or route not in routes:
        raise CorpusError(f"{where} ({name}): route must be one of the hot routes, got {route!r}")
    steps = []
    for index, step in enumerate(raw.get("setup") or []):
        if not isinstance(step, Mapping) or set(step) - _STEP_KEYS:
            raise CorpusError(f"{where} ({name}): setup step {index} has unknown keys")
        steps.append(_request(step, f"{where} ({name}) setup {index}"))
    return Case(
        id=f"{group}/{name}", route=route, request=_request(raw, f"{where} ({name})"), setup=tuple(steps)
    )


def load_file(path: Path, routes: Collection[str] | None = None) -> list[Case]:
    """The file's cases; ``routes`` are the accepted route ids (default: ``hot_routes()``)."""
    known = hot_routes() if routes is None else routes
    document = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)  # noqa: S506 - SafeLoader subclass
    if not isinstance(document, Mapping) or not isinstance(document.get("cases"), list):
        raise CorpusError(f"{path}: expected a mapping with a 'cases' list")
    group = str(document.get("group") or path.stem)
    return [
        _case(raw, group, f"{path.name} case {index}", known) for index, raw in enumerate(document["cases"])
    ]


def load_cases(paths: Iterable[Path] | None = None) -> list[Case]:
    """Cases from the given files (default: every file in ``parity/cases``, by name), ids unique."""
    files = sorted(CASES_DIR.glob("*.yaml")) if paths is None else list(paths)
    routes = hot_routes()
    cases = [case for path in files for case in load_file(path, routes)]
    seen: set[str] = set()
    for case in cases:
        if case.id in seen:
            raise CorpusError(f"duplicate case id {case.id}")
        seen.add(case.id)
    return cases
