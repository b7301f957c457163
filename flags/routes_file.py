"""The hot routes, read from the gateway's route table: the one list of them.

``flags`` never imports the gateway (import-linter), so it reads the same TOML file the gateway
loads, ``ROUTES_FILE`` (default: the shipped ``gateway/routes.toml``). Only the route ids and
methods are read here; the gateway validates the rest of the table when it loads it. ``flagctl``, the
default flags file and ``parity`` all take their route list from here, so adding a route to the
table is the whole change.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path

# Installed or checked out, the gateway package sits beside this one and ships its table.
SHIPPED_ROUTES_FILE = Path(__file__).resolve().parents[1] / "gateway" / "routes.toml"
DEFAULT_METHODS = ["GET", "HEAD"]  # what the gateway's table assumes for a route that names none


class RoutesFileError(Exception):
    """The route table file cannot be read, or a route in it has no id."""


def routes_file(env: Mapping[str, str] = os.environ) -> Path:
    """The route table the gateway of this environment loads."""
    return Path(env.get("ROUTES_FILE") or SHIPPED_ROUTES_FILE)


def route_methods(path: Path) -> dict[str, frozenset[str]]:
    """route id → its methods (the gateway's default, GET and HEAD, when it names none), in file order."""
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise RoutesFileError(f"route table {path}: {exc}") from exc
    routes: dict[str, frozenset[str]] = {}
    for route in document.get("routes") or []:
        route_id = route.get("id") if isinstance(route, dict) else None
        if not isinstance(route_id, str) or not route_id:
            raise RoutesFileError(f"route table {path}: every [[routes]] entry needs an id")
        methods = route.get("methods", DEFAULT_METHODS)
        if not isinstance(methods, list):
            raise RoutesFileError(f"route table {path}: route {route_id}: methods must be a list")
        routes[route_id] = frozenset(str(method).upper() for method in methods)
    return routes


def route_ids(path: Path) -> tuple[str, ...]:
    """The ids of the table's routes, in file order."""
    return tuple(route_methods(path))
