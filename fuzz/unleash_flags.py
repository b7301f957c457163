"""The flags evaluator (flags/unleash.py) on random Unleash client-features documents and contexts.

Invariants: ``Toggles.compile`` either compiles the document or raises one of the errors the
providers catch (``ValueError``, ``TypeError``, ``AttributeError``: the last good flags stay); a
compiled toggle evaluates any context without raising and answers an ``Evaluation`` whose reason is
one of the documented ones (contexts as the gateway builds them: text values).
"""

from __future__ import annotations

import json
import logging
from typing import Any

import atheris

from flags.unleash import Evaluation, Toggles

# Unleash's engine logs (and answers "disabled" for) a toggle it cannot evaluate: noise here.
logging.getLogger("yggdrasil_engine.engine").setLevel(logging.CRITICAL)
REFUSED = (ValueError, TypeError, AttributeError)  # what FileFlags/UnleashFlags catch and log
REASONS = {"static", "split", "targeting_match", "default", "disabled"}
STRATEGIES = (
    "default",
    "userWithId",
    "gradualRolloutUserId",
    "gradualRolloutSessionId",
    "gradualRolloutRandom",
    "flexibleRollout",
    "remoteAddress",
    "applicationHostname",
)
OPERATORS = (
    "IN",
    "NOT_IN",
    "STR_CONTAINS",
    "STR_STARTS_WITH",
    "STR_ENDS_WITH",
    "NUM_EQ",
    "NUM_GT",
    "NUM_LTE",
    "DATE_AFTER",
)
FIELDS = (
    "userId",
    "sessionId",
    "remoteAddress",
    "environment",
    "appName",
    "currentTime",
    "appVersion",
    "platform",
)
PARAMETERS = ("percentage", "rollout", "groupId", "stickiness", "userIds", "IPs")


def _value(fdp: atheris.FuzzedDataProvider, depth: int = 0) -> Any:
    """A JSON value of any type (mostly small scalars; strings often numbers or addresses)."""
    kind = fdp.ConsumeIntInRange(0, 9 if depth < 2 else 6)
    if kind == 0:
        return None
    if kind == 1:
        return fdp.ConsumeBool()
    if kind == 2:
        return fdp.ConsumeIntInRange(-(2**63), 2**63)
    if kind == 3:
        return fdp.ConsumeRegularFloat() if fdp.ConsumeBool() else fdp.ConsumeFloat()
    if kind == 4:
        return str(fdp.ConsumeIntInRange(-5, 150))
    if kind == 5:
        return ("10.0.0.0/8", "127.0.0.1", "::1", "2001:db8::/32", "300.1.1.1/33", "")[
            fdp.ConsumeIntInRange(0, 5)
        ]
    if kind == 6:
        return fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 12))
    if kind == 7:
        return [_value(fdp, depth + 1) for _ in range(fdp.ConsumeIntInRange(0, 3))]
    return {
        fdp.ConsumeUnicodeNoSurrogates(4): _value(fdp, depth + 1) for _ in range(fdp.ConsumeIntInRange(0, 3))
    }


def _pick(fdp: atheris.FuzzedDataProvider, choices: tuple[str, ...]) -> Any:
    return choices[fdp.ConsumeIntInRange(0, len(choices) - 1)] if fdp.ConsumeIntInRange(0, 7) else _value(fdp)


def _key(fdp: atheris.FuzzedDataProvider, choices: tuple[str, ...]) -> str:
    return (
        choices[fdp.ConsumeIntInRange(0, len(choices) - 1)]
        if fdp.ConsumeIntInRange(0, 7)
        else fdp.ConsumeUnicodeNoSurrogates(6)
    )


def _constraint(fdp: atheris.FuzzedDataProvider) -> Any:
    constraint = {
        "contextName": _pick(fdp, FIELDS),
        "operator": _pick(fdp, OPERATORS),
        "values": [_value(fdp) for _ in range(fdp.ConsumeIntInRange(0, 3))]
        if fdp.ConsumeIntInRange(0, 7)
        else _value(fdp),
        "value": _value(fdp),
        "inverted": _value(fdp) if not fdp.ConsumeIntInRange(0, 3) else fdp.ConsumeBool(),
        "caseInsensitive": fdp.ConsumeBool(),
    }
    return constraint if fdp.ConsumeIntInRange(0, 15) else _value(fdp)


def _strategy(fdp: atheris.FuzzedDataProvider) -> Any:
    strategy = {
        "name": _pick(fdp, STRATEGIES),
        "parameters": {_key(fdp, PARAMETERS): _value(fdp) for _ in range(fdp.ConsumeIntInRange(0, 4))},
        "constraints": [_constraint(fdp) for _ in range(fdp.ConsumeIntInRange(0, 3))],
    }
    if not fdp.ConsumeIntInRange(0, 15):
        strategy["segments"] = _value(fdp)
    return strategy if fdp.ConsumeIntInRange(0, 15) else _value(fdp)


def _feature(fdp: atheris.FuzzedDataProvider) -> Any:
    feature = {
        "name": _pick(fdp, ("route.reviews.list", "route.reviews.summary")),
        "enabled": fdp.ConsumeBool() if fdp.ConsumeIntInRange(0, 7) else _value(fdp),
        "strategies": [_strategy(fdp) for _ in range(fdp.ConsumeIntInRange(0, 3))]
        if fdp.ConsumeIntInRange(0, 15)
        else _value(fdp),
    }
    if not fdp.ConsumeIntInRange(0, 15):
        feature["variants"] = _value(fdp)
    return feature if fdp.ConsumeIntInRange(0, 31) else _value(fdp)


def document(fdp: atheris.FuzzedDataProvider) -> Any:
    if not fdp.ConsumeIntInRange(0, 31):
        return _value(fdp)  # not even an object
    features = [_feature(fdp) for _ in range(fdp.ConsumeIntInRange(0, 3))]
    doc: dict[str, Any] = {
        "version": 1,
        "features": features if fdp.ConsumeIntInRange(0, 31) else _value(fdp),
    }
    if not fdp.ConsumeIntInRange(0, 7):
        doc["segments"] = _value(fdp)
    return doc


def _text(fdp: atheris.FuzzedDataProvider) -> str:
    """A context value as the gateway sends them: text, often a number, an address or empty."""
    kind = fdp.ConsumeIntInRange(0, 3)
    if kind == 0:
        return str(fdp.ConsumeIntInRange(-5, 10**6))
    if kind == 1:
        return ("10.1.2.3", "127.0.0.1", "::1", "2001:db8::7", "")[fdp.ConsumeIntInRange(0, 4)]
    return fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 12))


def context(fdp: atheris.FuzzedDataProvider) -> dict[str, Any]:
    """What ``EvaluationContext.to_unleash`` builds (flags/model.py): text fields, text properties."""
    found: dict[str, Any] = {name: _text(fdp) for name in FIELDS[:5] if fdp.ConsumeBool()}
    if fdp.ConsumeBool():
        found["properties"] = {_key(fdp, FIELDS): _text(fdp) for _ in range(fdp.ConsumeIntInRange(0, 3))}
    return found


def one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    raw = document(fdp)
    try:
        # Through JSON as a provider reads it: what cannot be written as JSON never reaches compile.
        parsed = json.loads(json.dumps(raw))
    except (ValueError, TypeError):
        return
    try:
        toggles = Toggles.compile(parsed)
    except REFUSED:
        return
    for name in toggles.evaluators:
        for _ in range(fdp.ConsumeIntInRange(1, 3)):
            evaluation = toggles.evaluate(name, context(fdp))
            assert isinstance(evaluation, Evaluation) and evaluation.reason in REASONS, evaluation
