"""The hot routes, read from the gateway's route table: the one list of them.

``flags`` never imports the gateway (import-linter), so it reads the same TOML file the gateway
loads, ``ROUTES_FILE`` (default: the shipped ``gateway/routes.toml``). Only the route ids are
read here; the gateway validates the rest of the table when it loads it. ``flagctl``, the
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


class RoutesFileError(Exception):
    """The route table file cannot be read, or a route in it has no id."""


def routes_file(env: Mapping[str, str] = os.environ) -> Path:
    """The route table the gateway of this environment loads."""
    return Path(env.get("ROUTES_FILE") or SHIPPED_ROUTES_FILE)


def route_ids(path: Path) -> tuple[str, ...]:
    """The ids of the table's routes, in file order."""
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise RoutesFileError(f"route table {path}: {exc}") from exc
    ids: list[str] = []
    for route in document.get("routes") or []:
        route_id = route.get("id") if isinstance(route, dict) else None
        if not isinstance(route_id, str) or not route_id:
            raise RoutesFileError(f"route table {path}: every [[routes]] entry needs an id")
        ids.append(route_id)
    return tuple(ids)
