"""The official Unleash client specification, run through our evaluator.

Every case must pass. Toggles our compiler supports are answered natively (asserted);
the rest go to Unleash's engine (asserted too), so an unsupported feature is never
answered wrong. The delta-API files (19, 20) describe incremental updates, which we do
not consume (we always fetch the whole client-features document), so they do not apply.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flags.unleash import Toggles
from tests.conftest import require_service

ROOT = Path(__file__).resolve().parents[2]
SPEC_DIR = ROOT / ".cache/node/node_modules/@unleash/client-specification/specifications"
NOT_APPLICABLE = {"19-delta-api-hydration.json", "20-delta-api-events.json"}
# Toggles we expect the native compiler to refuse (and hand to the engine), by spec file.
EXPECTED_FALLBACK_FILES = {
    "08-variants.json",
    "12-custom-stickiness.json",
    "13-constraint-operators.json",
    "14-constraint-semver-operators.json",
    "15-global-constraints.json",
    "16-strategy-variants.json",
    "17-dependent-features.json",
    "21-regex-constraint-operators.json",
    "22-cidr-constraint-operators.json",
}


def _spec_files() -> list[Path]:
    return sorted(SPEC_DIR.glob("[0-9]*.json")) if SPEC_DIR.exists() else []


def _cases() -> list[tuple[str, str, dict, dict]]:
    cases = []
    for path in _spec_files():
        if path.name in NOT_APPLICABLE:
            continue
        spec = json.loads(path.read_text())
        for test in spec.get("tests", []):
            cases.append((path.name, "enabled", spec["state"], test))
        for test in spec.get("variantTests", []):
            cases.append((path.name, "variant", spec["state"], test))
    return cases


CASES = _cases()
_compiled: dict[str, Toggles] = {}


def _toggles(name: str, state: dict) -> Toggles:
    if name not in _compiled:
        _compiled[name] = Toggles.compile(state)
    return _compiled[name]


def test_the_specification_is_installed():
    require_service(SPEC_DIR.exists(), f"the Unleash client specification ({SPEC_DIR}; run make node-deps)")
    assert len(CASES) >= 250


@pytest.mark.parametrize(
    ("spec", "kind", "state", "test"), CASES, ids=[f"{c[0]}:{c[3]['description']}" for c in CASES]
)
def test_specification_case(spec, kind, state, test):
    toggles = _toggles(spec, state)
    evaluation = toggles.evaluate(test["toggleName"], test["context"])
    if kind == "enabled":
        assert bool(evaluation and evaluation.enabled) is test["expectedResult"]
    else:
        expected = test["expectedResult"]
        got = evaluation.variant if evaluation and evaluation.variant else "disabled"
        assert got == expected["name"]


def test_supported_toggles_are_native_and_the_rest_fall_back():
    require_service(SPEC_DIR.exists(), "the Unleash client specification")
    native = fallback = 0
    for path in _spec_files():
        if path.name in NOT_APPLICABLE:
            continue
        toggles = _toggles(path.name, json.loads(path.read_text())["state"])
        native += len(toggles.evaluators) - len(toggles.fallback)
        fallback += len(toggles.fallback)
        if path.name not in EXPECTED_FALLBACK_FILES:
            assert not toggles.fallback, f"{path.name} should compile natively: {sorted(toggles.fallback)}"
        else:
            assert toggles.fallback, f"{path.name} was expected to need the engine"
    assert native >= 60 and fallback > 0, (native, fallback)
