"""``make reliability-report``: every fault scenario once on a fresh stack, then the idle and slow
clients, the figures as the README's Reliability tables (stdout, and ``.cache/reliability.md``)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from tests.reliability import resources
from tests.reliability.harness import SCENARIOS, run, stack, table


def main() -> None:
    with tempfile.TemporaryDirectory() as work, stack(Path(work)) as running:
        results = [run(running, scenario) for scenario in SCENARIOS]
        attacked = resources.attack(running)
    text = table(results) + "\n\n" + resources.table(attacked)
    out = Path(".cache") / "reliability.md"
    out.parent.mkdir(exist_ok=True)
    out.write_text(text + "\n", encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
