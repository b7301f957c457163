"""``python -m fuzz TARGET [--seconds N]``: coverage-guided fuzzing of one harness with atheris.

New inputs go to ``.cache/fuzz/<target>/corpus`` (the seeds of ``fuzz/corpus/<target>/`` are read, never
written); a crash is written to ``.cache/fuzz/<target>/`` as ``crash-<sha1>`` and the run exits non-zero:
copy it into ``fuzz/corpus/<target>/`` and write the regression test next to the parser's tests.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

import atheris

from fuzz import TARGETS

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m fuzz")
    parser.add_argument("target", choices=TARGETS)
    parser.add_argument("--seconds", type=int, default=60)
    args = parser.parse_args(argv)
    # Coverage feedback from our own code only (instrumenting every library costs minutes at start).
    with atheris.instrument_imports(include=["fuzz", "gateway", "identity", "flags", "strictjson"]):
        harness = importlib.import_module(f"fuzz.{args.target}")
    work = ROOT / ".cache" / "fuzz" / args.target
    (work / "corpus").mkdir(parents=True, exist_ok=True)
    seeds = ROOT / "fuzz" / "corpus" / args.target
    atheris.Setup(
        [
            sys.argv[0],
            f"-max_total_time={args.seconds}",
            "-timeout=10",
            "-rss_limit_mb=2048",
            f"-artifact_prefix={work}/",
            str(work / "corpus"),
            *([str(seeds)] if seeds.is_dir() else []),
        ],
        harness.one_input,
    )
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv[1:])
