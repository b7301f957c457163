"""Per-route ignore rules: differences QA has decided not to count, each with a reason.

File (YAML)::

    reviews.list:
      - {pointer: /items/0/helpful_count, reason: "votes arrive between the two calls"}
      - {header: cache-control, reason: "CDN adds it on legacy only"}
    "*":
      - {pointer: /generated_at, reason: "render time"}

A ``pointer`` matches that JSON Pointer and everything under it; a ``header`` matches that
header. ``*`` applies to every route.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from parity.diff import Difference


class RulesError(Exception):
    """The rules file is malformed."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Rule:
    where: str  # "body:/items/0/x" or "header:cache-control"
    reason: str

    def matches(self, difference: Difference) -> bool:
        where = difference.where.split(" ", 1)[0]
        return where == self.where or where.startswith(self.where + "/")


@dataclass(frozen=True, slots=True)
class Rules:
    by_route: Mapping[str, tuple[Rule, ...]]

    def for_route(self, route: str) -> tuple[Rule, ...]:
        return self.by_route.get(route, ()) + self.by_route.get("*", ())

    def ignored(self, route: str, difference: Difference) -> Rule | None:
        return next((rule for rule in self.for_route(route) if rule.matches(difference)), None)


NO_RULES = Rules(by_route={})


def load_rules(path: Path) -> Rules:
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise RulesError(f"{path}: {exc}") from exc
    if not isinstance(document, Mapping):
        raise RulesError(f"{path}: expected a mapping of route id to a list of rules")
    by_route: dict[str, tuple[Rule, ...]] = {}
    for route, entries in document.items():
        rules = []
        for entry in entries or []:
            reason = entry.get("reason") if isinstance(entry, Mapping) else None
            if not isinstance(reason, str) or not reason.strip():
                raise RulesError(f"{path}: every rule of {route} needs a reason")
            if "pointer" in entry:
                rules.append(Rule(where=f"body:{entry['pointer']}", reason=reason))
            elif "header" in entry:
                rules.append(Rule(where=f"header:{str(entry['header']).lower()}", reason=reason))
            else:
                raise RulesError(f"{path}: a rule of {route} needs a pointer or a header")
        by_route[str(route)] = tuple(rules)
    return Rules(by_route=by_route)
