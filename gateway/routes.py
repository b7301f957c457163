"""The route table: clusters and routes from a TOML file, matched by method + path segments.

Matching walks a trie of path segments (literal children before ``{param}``), so its
cost grows with the path's depth, not with the number of routes.  A table is an
immutable snapshot; a reload builds a new one and the app swaps one reference.

The table is the one list of hot routes: ``flagctl``, the default flags file and ``parity``
read the same file (``flags.routes_file``). A route's flag is always ``route.<route id>``
(``flags.flag_key``); the table has no key to name it otherwise.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from gateway.autopilot import AutopilotConfigError, AutopilotPolicy
from gateway.limiter import LimitConfigError, LimitPolicy

AUTH_MODES = ("none", "optional", "required")
ROUTE_KEYS = frozenset(
    {
        "id",
        "methods",
        "path",
        "candidate",
        "auth",
        "connect_timeout",
        "read_timeout",
        "shadow",
        "capture",
        "auto_offload",
    }
)
CLUSTER_KEYS = frozenset(
    {"url", "max_in_flight", "max_connections", "connect_timeout", "read_timeout", "limiter"}
)
_UNSAFE = re.compile(rb"%2[eEfF]|%5[cC]|%00|\\")
_PARAM = re.compile(r"\{[a-z_][a-z0-9_]*\}")


class RouteTableError(Exception):
    """The route table file is malformed; the message says where."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Cluster:
    name: str
    url: str
    host: str
    port: int
    max_in_flight: int
    max_connections: int
    connect_timeout: float
    read_timeout: float
    # The adaptive concurrency limit (gateway/limiter.py), or None: only the static bulkhead.
    limit: LimitPolicy | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class Route:
    id: str
    methods: frozenset[str]
    path: str
    candidate: str
    auth: str
    connect_timeout: float | None = None
    read_timeout: float | None = None
    # Share of GET/HEAD requests also sent to the other backend and compared (after the answer).
    shadow_rate: float = 0.0
    # Share of requests written to the capture file (method, path, query, persona; never secrets).
    capture_rate: float = 0.0
    # The autopilot may move it to its candidate while legacy sheds (gateway/autopilot.py).
    auto_offload: bool = False


@dataclass(slots=True)
class _Node:
    literal: dict[str, _Node] = field(default_factory=dict)
    param: _Node | None = None
    routes: dict[str, Route] = field(default_factory=dict)  # method → route


def unsafe_path(raw_path: bytes) -> bool:
    """Dot segments, empty segments, encoded dots/slashes/backslashes or NUL: never forwarded."""
    if not raw_path.startswith(b"/") or _UNSAFE.search(raw_path):
        return True
    segments = raw_path.split(b"/")[1:]
    return any(segment in (b"", b".", b"..") for segment in segments[:-1]) or segments[-1] in (b".", b"..")


@dataclass(frozen=True, kw_only=True, slots=True)
class RouteTable:
    clusters: Mapping[str, Cluster]
    routes: tuple[Route, ...]
    default_cluster: str
    default_auth: str
    _root: _Node
    # The ``[autopilot]`` table (gateway/autopilot.py), or None when the file has none.
    autopilot: AutopilotPolicy | None = None

    def match(self, method: str, path: str) -> Route | None:
        segments = path.split("/")[1:]
        return _walk(self._root, segments, 0, method)

    def by_id(self, route_id: str) -> Route | None:
        return next((route for route in self.routes if route.id == route_id), None)


def _walk(node: _Node, segments: list[str], index: int, method: str) -> Route | None:
    if index == len(segments):
        return node.routes.get(method)
    segment = segments[index]
    child = node.literal.get(segment)
    if child is not None:
        found = _walk(child, segments, index + 1, method)
        if found is not None:
            return found
    if node.param is not None and segment:
        return _walk(node.param, segments, index + 1, method)
    return None


def _cluster(name: str, raw: Mapping[str, Any], urls: Mapping[str, str]) -> Cluster:
    url = urls.get(name) or raw.get("url")
    if not isinstance(url, str):
        raise RouteTableError(f"cluster {name}: needs a url")
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise RouteTableError(f"cluster {name}: url must be http://host:port, got {url!r}")
    unknown = set(raw) - CLUSTER_KEYS
    if unknown:
        raise RouteTableError(f"cluster {name}: unknown key(s) {', '.join(sorted(unknown))}")
    numbers = {
        "max_in_flight": raw.get("max_in_flight", 512),
        "max_connections": raw.get("max_connections", 64),
        "connect_timeout": raw.get("connect_timeout", 1.0),
        "read_timeout": raw.get("read_timeout", 15.0),
    }
    for key, value in numbers.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
            raise RouteTableError(f"cluster {name}: {key} must be a positive number, got {value!r}")
    return Cluster(
        name=name,
        url=url,
        host=parts.hostname,
        port=parts.port or 80,
        max_in_flight=int(numbers["max_in_flight"]),
        max_connections=int(numbers["max_connections"]),
        connect_timeout=float(numbers["connect_timeout"]),
        read_timeout=float(numbers["read_timeout"]),
        limit=_limit(name, raw.get("limiter")),
    )


def _limit(cluster: str, raw: Any) -> LimitPolicy | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise RouteTableError(
            f"cluster {cluster}: limiter must be a table, e.g. limiter = {{enabled = true}}"
        )
    enabled = raw.get("enabled", True)
    if not isinstance(enabled, bool):
        raise RouteTableError(f"cluster {cluster}: limiter.enabled must be true or false")
    try:
        policy = LimitPolicy.from_table(dict(raw), f"cluster {cluster}")
    except LimitConfigError as exc:
        raise RouteTableError(str(exc)) from None
    return policy if enabled else None


def _route(raw: Mapping[str, Any], clusters: Mapping[str, Cluster], default_auth: str) -> Route:
    route_id = raw.get("id")
    path = raw.get("path")
    if not isinstance(route_id, str) or not isinstance(path, str) or not path.startswith("/"):
        raise RouteTableError(f"route {route_id!r}: needs an id and a path starting with /")
    unknown = set(raw) - ROUTE_KEYS
    if unknown:
        # A misspelt key (or the old ``flag``) would otherwise be ignored without a word.
        raise RouteTableError(f"route {route_id}: unknown keys {sorted(unknown)}")
    candidate = raw.get("candidate")
    if candidate not in clusters:
        raise RouteTableError(f"route {route_id}: candidate cluster {candidate!r} is not defined")
    auth = raw.get("auth", default_auth)
    if auth not in AUTH_MODES:
        raise RouteTableError(f"route {route_id}: auth must be one of {AUTH_MODES}")
    methods = frozenset(str(m).upper() for m in raw.get("methods", ["GET", "HEAD"]))
    shadow = raw.get("shadow") or {}
    capture = raw.get("capture") or {}
    rates = {
        "shadow": float(shadow.get("sample_rate", 0.0)),
        "capture": float(capture.get("sample_rate", 0.0)),
    }
    if not all(0.0 <= rate <= 1.0 for rate in rates.values()):
        raise RouteTableError(f"route {route_id}: sample_rate must be between 0 and 1")
    auto_offload = raw.get("auto_offload", False)
    if not isinstance(auto_offload, bool):
        raise RouteTableError(f"route {route_id}: auto_offload must be true or false")
    if auto_offload and not (rates["shadow"] > 0 and methods <= {"GET", "HEAD"}):
        # Parity evidence comes from shadowed reads only: a write would move unproven.
        raise RouteTableError(
            f"route {route_id}: auto_offload needs parity evidence: only GET/HEAD methods and "
            "shadow = {sample_rate = …} above 0"
        )
    return Route(
        id=route_id,
        methods=methods,
        path=path,
        candidate=str(candidate),
        auth=str(auth),
        connect_timeout=raw.get("connect_timeout"),
        read_timeout=raw.get("read_timeout"),
        shadow_rate=rates["shadow"],
        capture_rate=rates["capture"],
        auto_offload=auto_offload,
    )


def build_table(document: Mapping[str, Any], cluster_urls: Mapping[str, str]) -> RouteTable:
    clusters = {
        name: _cluster(name, raw, cluster_urls) for name, raw in (document.get("clusters") or {}).items()
    }
    default_cluster = str(document.get("default_cluster", "legacy"))
    if default_cluster not in clusters:
        raise RouteTableError(f"default_cluster {default_cluster!r} is not defined")
    default_auth = str(document.get("default_auth", "optional"))
    if default_auth not in AUTH_MODES:
        raise RouteTableError(f"default_auth must be one of {AUTH_MODES}")
    routes = tuple(_route(raw, clusters, default_auth) for raw in document.get("routes") or [])
    autopilot = _autopilot(document.get("autopilot"))
    if autopilot is not None and autopilot.enabled and clusters[default_cluster].limit is None:
        # It acts when that limiter sheds: without one it would never act, and say nothing.
        raise RouteTableError(
            f"[autopilot] enabled needs a limiter on the default cluster {default_cluster} "
            "(it moves routes while that limiter sheds)"
        )
    root = _Node()
    seen: set[str] = set()
    for route in routes:
        if route.id in seen:
            raise RouteTableError(f"route id {route.id} appears twice")
        seen.add(route.id)
        node = root
        for segment in route.path.split("/")[1:]:
            if _PARAM.fullmatch(segment):
                node.param = node.param or _Node()
                node = node.param
            else:
                node = node.literal.setdefault(segment, _Node())
        for method in route.methods:
            if method in node.routes:
                raise RouteTableError(
                    f"{method} {route.path} is claimed by {node.routes[method].id} and {route.id}"
                )
            node.routes[method] = route
    return RouteTable(
        clusters=clusters,
        routes=routes,
        default_cluster=default_cluster,
        default_auth=default_auth,
        _root=root,
        autopilot=autopilot,
    )


def _autopilot(raw: Any) -> AutopilotPolicy | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise RouteTableError("[autopilot] must be a table, e.g. [autopilot] enabled = false")
    try:
        return AutopilotPolicy.from_table(raw)
    except AutopilotConfigError as exc:
        raise RouteTableError(str(exc)) from None


def load_table(path: Path, cluster_urls: Mapping[str, str]) -> RouteTable:
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise RouteTableError(f"{path}: {exc}") from exc
    return build_table(document, cluster_urls)
