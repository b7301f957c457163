"""A quick run of every fuzz harness (fuzz/, ADR 0019) so none can rot: each on the files of its corpus
(seeds and past crashes: a crash found once stays fixed) and on a few thousand random inputs, the
same ones every run. ``make fuzz`` runs them coverage-guided with atheris for longer."""

from __future__ import annotations

import importlib
import random
from pathlib import Path

import pytest

from fuzz import TARGETS

CORPUS = Path(__file__).parents[2] / "fuzz" / "corpus"
RANDOM_INPUTS = 5000


@pytest.mark.parametrize("target", TARGETS)
def test_the_harness_holds_on_its_corpus_and_random_inputs(target: str) -> None:
    one_input = importlib.import_module(f"fuzz.{target}").one_input
    seeds = sorted((CORPUS / target).glob("*"))
    for path in seeds:
        one_input(path.read_bytes())
    rng = random.Random(target)
    for _ in range(RANDOM_INPUTS):
        one_input(rng.randbytes(rng.randrange(0, 256)))


def test_every_target_has_seeds() -> None:
    for target in TARGETS:
        assert any((CORPUS / target).glob("*")), f"fuzz/corpus/{target}/ has no seed"
