"""Fuzz harnesses for the parsers we own (ADR 0019), run by atheris: ``python -m fuzz TARGET``.

Each module has ``one_input(data: bytes) -> None``: it turns the fuzzer's bytes into an input for one
parser and raises only when an invariant breaks (an exception the parser must never let out, or a
wrong answer). ``make fuzz`` runs every target for ``FUZZ_SECONDS``; ``tests/fuzz`` runs each on a
few thousand inputs and on every file of ``fuzz/corpus/<target>/`` (seeds and past crashes), so the
harnesses cannot rot and a crash found once stays fixed.
"""

TARGETS = ("routes", "identity_verify", "upstream_response", "headers", "unleash_flags")
