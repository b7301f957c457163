"""Reading a route-table sub-table (``limiter = {…}``, ``[autopilot]``) into a frozen settings dataclass.

One rule for every such table: keys must be fields of the dataclass; a ``bool`` field takes
``true``/``false``; any other field takes a number and never a boolean (TOML's ``true`` is not 1);
an ``int`` field takes a whole number; ``float`` fields are stored as floats. Range checks stay in
each dataclass's ``__post_init__``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def typed_values(
    cls: Any, raw: Mapping[str, Any], *, skip: frozenset[str] = frozenset()
) -> tuple[dict[str, Any], list[str], list[str]]:
    """``cls``'s keyword arguments from ``raw`` (keys in ``skip`` ignored), the unknown keys (sorted),
    and one problem per value of the wrong type (``"name must be …, got …"``, in ``raw``'s order)."""
    fields = cls.__dataclass_fields__
    unknown = sorted(set(raw) - set(fields) - skip)
    values: dict[str, Any] = {}
    problems: list[str] = []
    for name, value in raw.items():
        if name not in fields:
            continue
        kind = fields[name].type
        if kind == "bool" and not isinstance(value, bool):
            problems.append(f"{name} must be true or false, got {value!r}")
        elif kind != "bool" and (isinstance(value, bool) or not isinstance(value, int | float)):
            problems.append(f"{name} must be a number, got {value!r}")
        elif kind == "int" and not isinstance(value, int):
            problems.append(f"{name} must be a whole number, got {value!r}")
        else:
            values[name] = float(value) if kind == "float" else value
    return values, unknown, problems
