"""Unleash toggle evaluation, compiled for speed, with the reference engine behind it.

``Toggles.compile(document)`` takes a client-features document (what
``/api/client/features`` returns and what the file provider reads) and turns each
toggle into a small closure when every part of it is supported here:

* strategies: ``default``, ``userWithId``, ``gradualRolloutUserId``,
  ``gradualRolloutSessionId``, ``gradualRolloutRandom``, ``flexibleRollout``
  (stickiness ``default``, ``userId``, ``sessionId``, ``random`` or a custom
  property), ``remoteAddress`` (addresses and CIDR ranges);
* constraint operators: ``IN``, ``NOT_IN``, ``STR_CONTAINS``, ``STR_STARTS_WITH``,
  ``STR_ENDS_WITH`` (``caseInsensitive``), ``NUM_EQ``, ``NUM_GT``, ``NUM_GTE``,
  ``NUM_LT``, ``NUM_LTE``; ``inverted`` on all of them.

Any toggle with something else (other operators such as dates, semver, regex,
CIDR constraints; segments; dependencies; variants; unknown strategies) is
evaluated by Unleash's own engine (yggdrasil, what UnleashClient runs), so an
answer is never wrong, only slower for those toggles.  Percentages use Unleash's
normalisation: ``murmur3_32("{groupId}:{id}", seed 0) % 100 + 1 <= percentage``.
"""

from __future__ import annotations

import ipaddress
import json
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import mmh3
from yggdrasil_engine.engine import UnleashEngine

Context = Mapping[str, Any]
Predicate = Callable[[Context], bool]

STANDARD_FIELDS = frozenset({"userId", "sessionId", "remoteAddress", "environment", "appName", "currentTime"})
ROLLOUT_STRATEGIES = frozenset(
    {"gradualRolloutUserId", "gradualRolloutSessionId", "gradualRolloutRandom", "flexibleRollout"}
)


class Unsupported(Exception):
    """Part of a toggle the compiler does not handle; the toggle goes to the reference engine."""


def normalized_value(identifier: str, group_id: str, normalizer: int = 100) -> int:
    return mmh3.hash(f"{group_id}:{identifier}", 0, signed=False) % normalizer + 1


def _field(context: Context, name: str) -> Any:
    if name in STANDARD_FIELDS:
        return context.get(name)
    properties = context.get("properties")
    return properties.get(name) if isinstance(properties, Mapping) else None


def _percentage(raw: Any) -> int:
    try:
        return int(raw)
    except (TypeError, ValueError):
        return 0


def _number(raw: Any) -> float | None:
    try:
        value = float(raw)
    except (TypeError, ValueError):
        return None
    return None if value != value else value  # NaN compares false everywhere


_NUMERIC: dict[str, Callable[[float, float], bool]] = {
    "NUM_EQ": lambda a, b: a == b,
    "NUM_GT": lambda a, b: a > b,
    "NUM_GTE": lambda a, b: a >= b,
    "NUM_LT": lambda a, b: a < b,
    "NUM_LTE": lambda a, b: a <= b,
}
_STRING: dict[str, Callable[[str, str], bool]] = {
    "STR_CONTAINS": lambda value, part: part in value,
    "STR_STARTS_WITH": lambda value, part: value.startswith(part),
    "STR_ENDS_WITH": lambda value, part: value.endswith(part),
}


def _operator(constraint: Mapping[str, Any]) -> Predicate:
    name = str(constraint.get("contextName", ""))
    operator = constraint.get("operator")
    values = [str(v) for v in constraint.get("values") or []]
    if operator in ("IN", "NOT_IN"):
        allowed = frozenset(values)
        negate = operator == "NOT_IN"

        def member(context: Context) -> bool:
            value = _field(context, name)
            found: bool = value is not None and str(value) in allowed
            return found is not negate

        return member
    if operator in _STRING:
        test = _STRING[operator]
        fold = bool(constraint.get("caseInsensitive"))
        parts = [v.lower() for v in values] if fold else values

        def string(context: Context) -> bool:
            value = _field(context, name)
            if value is None:
                return False
            text = str(value).lower() if fold else str(value)
            return any(test(text, part) for part in parts)

        return string
    if operator in _NUMERIC:
        compare = _NUMERIC[operator]
        target = _number(constraint.get("value"))

        def numeric(context: Context) -> bool:
            value = _number(_field(context, name))
            return value is not None and target is not None and compare(value, target)

        return numeric
    raise Unsupported(f"operator {operator}")


def _constraint(constraint: Mapping[str, Any]) -> Predicate:
    test = _operator(constraint)
    if constraint.get("inverted"):
        return lambda context: not test(context)
    return test


def _sticky_id(context: Context, stickiness: str) -> str | None:
    """Unleash counts a field as present when it is set at all, even to an empty string."""
    if stickiness == "default":
        for field in ("userId", "sessionId"):
            if context.get(field) is not None:
                return str(context[field])
        return str(random.randint(1, 100_000))  # noqa: S311 - Unleash's own rule
    if stickiness == "random":
        return str(random.randint(1, 100_000))  # noqa: S311
    value = _field(context, stickiness)
    return None if value is None else str(value)


def _rollout(field: str, percentage: int, group_id: str) -> Predicate:
    def by_field(context: Context) -> bool:
        value = context.get(field)
        return value is not None and normalized_value(str(value), group_id) <= percentage

    return by_field


def _strategy_body(strategy: Mapping[str, Any], feature: str) -> Predicate:
    name = strategy.get("name")
    params = strategy.get("parameters") or {}
    if name == "default":
        return lambda context: True
    if name == "userWithId":
        users = frozenset(part.strip() for part in str(params.get("userIds", "")).split(","))
        return lambda context: context.get("userId") is not None and str(context["userId"]) in users
    if name == "gradualRolloutUserId":
        return _rollout("userId", _percentage(params.get("percentage")), str(params.get("groupId", feature)))
    if name == "gradualRolloutSessionId":
        return _rollout(
            "sessionId", _percentage(params.get("percentage")), str(params.get("groupId", feature))
        )
    if name == "gradualRolloutRandom":
        percentage = _percentage(params.get("percentage"))
        return lambda context: random.randint(1, 100) <= percentage  # noqa: S311
    if name == "flexibleRollout":
        rollout = _percentage(params.get("rollout"))
        stickiness = str(params.get("stickiness") or "default")
        group_id = str(params.get("groupId") or feature)

        def flexible(context: Context) -> bool:
            sticky = _sticky_id(context, stickiness)
            return sticky is not None and normalized_value(sticky, group_id) <= rollout

        return flexible
    if name == "remoteAddress":
        return _remote_address(str(params.get("IPs", "")))
    raise Unsupported(f"strategy {name}")


def _remote_address(raw: str) -> Predicate:
    exact, networks = set(), []
    for entry in (part.strip() for part in raw.split(",")):
        if not entry:
            continue
        exact.add(entry)
        if "/" in entry:
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                continue

    def matches(context: Context) -> bool:
        address = context.get("remoteAddress")
        if not address:
            return False
        if address in exact:
            return True
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip.version == network.version and ip in network for network in networks)

    return matches


@dataclass(frozen=True, slots=True)
class Evaluation:
    enabled: bool
    reason: str  # static | split | targeting_match | default | disabled
    variant: str | None = None


def _compile_strategy(strategy: Mapping[str, Any], feature: str) -> tuple[Predicate, str]:
    if strategy.get("segments") or strategy.get("variants"):
        raise Unsupported("segments or strategy variants")
    body = _strategy_body(strategy, feature)
    constraints = [_constraint(c) for c in strategy.get("constraints") or []]
    name = strategy.get("name")
    reason = (
        "split"
        if name in ROLLOUT_STRATEGIES
        else "static"
        if name == "default" and not constraints
        else "targeting_match"
    )
    if not constraints:
        return body, reason
    return (lambda context: all(test(context) for test in constraints) and body(context)), reason


Evaluate = Callable[[Context], Evaluation]
_DISABLED = Evaluation(enabled=False, reason="disabled")
_NO_MATCH = Evaluation(enabled=False, reason="default")


def compile_toggle(feature: Mapping[str, Any]) -> Evaluate:
    """A fast evaluator for one toggle; raises ``Unsupported`` for anything beyond the list above."""
    name = str(feature.get("name"))
    if feature.get("variants") or feature.get("dependencies"):
        raise Unsupported("variants or dependencies")
    if not feature.get("enabled"):
        return lambda context: _DISABLED
    raw = feature.get("strategies") or []
    if not raw:
        enabled = Evaluation(enabled=True, reason="static")
        return lambda context: enabled
    strategies = [
        (test, Evaluation(enabled=True, reason=reason))
        for test, reason in (_compile_strategy(s, name) for s in raw)
    ]

    def evaluate(context: Context) -> Evaluation:
        for test, result in strategies:
            if test(context):
                return result
        return _NO_MATCH

    return evaluate


def _reference(engine: UnleashEngine, name: str) -> Evaluate:
    def evaluate(context: Context) -> Evaluation:
        as_dict = dict(context)
        enabled = bool(engine.check_enabled(name, as_dict).is_enabled)
        variant = engine.check_variant(name, as_dict).variant
        variant_name = variant.name if variant is not None and variant.enabled else None
        return Evaluation(
            enabled=enabled, reason="targeting_match" if enabled else "default", variant=variant_name
        )

    return evaluate


def _engine(document: Mapping[str, Any]) -> UnleashEngine:
    """Unleash's engine holding ``document``. A document it cannot read is a ``ValueError`` like any
    other malformed one (the providers keep the last good toggles), never another exception: one
    would end the provider's refresh thread for good (found by fuzz/unleash_flags.py)."""
    engine = UnleashEngine()
    try:
        engine.take_state(json.dumps(document))
    except Exception as exc:  # yggdrasil raises KeyError (a strategy without "name"), its own errors, …
        raise ValueError(f"the Unleash engine cannot read the document: {exc!r}") from exc
    return engine


def _plain_rollout(feature: Mapping[str, Any]) -> int | None:
    """0 when off, 100 when on for everyone, N for one unconstrained percentage strategy, else None."""
    if not feature.get("enabled"):
        return 0
    strategies = feature.get("strategies") or []
    if not strategies or any(s.get("name") == "default" and not s.get("constraints") for s in strategies):
        return 100
    if len(strategies) == 1 and not strategies[0].get("constraints") and not strategies[0].get("segments"):
        params = strategies[0].get("parameters") or {}
        if strategies[0].get("name") == "flexibleRollout":
            return _percentage(params.get("rollout"))
        if strategies[0].get("name") in ROLLOUT_STRATEGIES:
            return _percentage(params.get("percentage"))
    return None


@dataclass(frozen=True, slots=True)
class Toggles:
    """An immutable snapshot: toggle name → evaluator; ``fallback`` names those the engine evaluates."""

    evaluators: Mapping[str, Evaluate]
    fallback: frozenset[str]
    # Share of traffic a toggle enables for anyone, when that is a plain number (else None).
    rollout: Mapping[str, int | None]

    @classmethod
    def compile(cls, document: Mapping[str, Any]) -> Toggles:
        evaluators: dict[str, Evaluate] = {}
        fallback: set[str] = set()
        rollout: dict[str, int | None] = {}
        engine: UnleashEngine | None = None
        segments = document.get("segments")
        for feature in document.get("features") or []:
            name = str(feature.get("name"))
            rollout[name] = _plain_rollout(feature)
            try:
                if segments and any(s.get("segments") for s in feature.get("strategies") or []):
                    raise Unsupported("segments")
                evaluators[name] = compile_toggle(feature)
            except Unsupported:
                if engine is None:
                    engine = _engine(document)
                evaluators[name] = _reference(engine, name)
                fallback.add(name)
        return cls(evaluators=evaluators, fallback=frozenset(fallback), rollout=rollout)

    def evaluate(self, name: str, context: Context) -> Evaluation | None:
        """None when the document has no such toggle."""
        evaluator = self.evaluators.get(name)
        return None if evaluator is None else evaluator(context)


EMPTY = Toggles(evaluators={}, fallback=frozenset(), rollout={})
