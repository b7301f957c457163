"""Decision cost: our compiled evaluator (through Flags.decide) vs UnleashClient.is_enabled, same run.

    .venv/bin/python bench/flags_decision.py [--calls 50000]

Both answer the same toggle (a 30 % flexible rollout on route.reviews.list) for the same users.
Prints p50/p99 per call in microseconds and the ratio; writes bench/results/flags_decision.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from UnleashClient import UnleashClient
from UnleashClient.cache import FileCache
from UnleashClient.utils import InstanceAllowType

from bench._support import Needs, write_result
from flags import EvaluationContext, Flags
from flags.overrides import FileOverrideStore
from flags.providers import FileFlagProvider

NEEDS = Needs()  # the evaluator and UnleashClient come with make install
DOCUMENT = {
    "version": 1,
    "features": [
        {
            "name": "route.reviews.list",
            "enabled": True,
            "strategies": [
                {
                    "name": "flexibleRollout",
                    "parameters": {"rollout": "30", "stickiness": "default", "groupId": "route.reviews.list"},
                    "constraints": [
                        {"contextName": "platform", "operator": "IN", "values": ["ios", "android"]}
                    ],
                }
            ],
            "variants": [],
        }
    ],
}


def _percentiles(samples_ns: list[int]) -> dict[str, float]:
    ordered = sorted(samples_ns)
    return {
        "p50_us": ordered[len(ordered) // 2] / 1000,
        "p99_us": ordered[int(len(ordered) * 0.99)] / 1000,
        "mean_us": statistics.fmean(ordered) / 1000,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=50_000)
    calls = parser.parse_args().calls
    work = Path(tempfile.mkdtemp(prefix="flags-bench-"))
    (work / "flags.json").write_text(json.dumps(DOCUMENT))
    flags = Flags(
        overrides=FileOverrideStore(work / "overrides.json", work / "audit.jsonl"),
        providers=[FileFlagProvider(work / "flags.json")],
    )
    contexts = [EvaluationContext(user_id=str(n), platform="ios") for n in range(calls)]
    cache = FileCache("bench", directory=str(work / "cache"))
    cache.bootstrap_from_dict(DOCUMENT)
    client = UnleashClient(
        url="http://127.0.0.1:9",
        app_name="bench",
        cache=cache,
        disable_metrics=True,
        disable_registration=True,
        request_timeout=1,
        request_retries=0,
        multiple_instance_mode=InstanceAllowType.SILENTLY_ALLOW,
    )
    client.initialize_client(fetch_toggles=False)
    try:
        unleash_contexts = [{"userId": c.user_id, "properties": {"platform": c.platform}} for c in contexts]
        agree = sum(
            (flags.decide("reviews.list", c).backend == "candidate")
            == client.is_enabled("route.reviews.list", u)
            for c, u in zip(contexts[:2000], unleash_contexts[:2000], strict=True)
        )
        ours, theirs = [], []
        clock = time.perf_counter_ns
        for context in contexts:
            start = clock()
            flags.decide("reviews.list", context)
            ours.append(clock() - start)
        for context in unleash_contexts:
            start = clock()
            client.is_enabled("route.reviews.list", context)
            theirs.append(clock() - start)
    finally:
        client.destroy()
    result = {
        "calls": calls,
        "agreement": f"{agree}/2000",
        "ours": _percentiles(ours),
        "unleash_client": _percentiles(theirs),
    }
    result["ratio_p50"] = result["unleash_client"]["p50_us"] / result["ours"]["p50_us"]
    print(f"{'evaluator':<34}{'p50 µs':>10}{'p99 µs':>10}{'mean µs':>10}")
    for label, key in (("flags.decide (compiled)", "ours"), ("UnleashClient.is_enabled", "unleash_client")):
        row = result[key]
        print(f"{label:<34}{row['p50_us']:>10.2f}{row['p99_us']:>10.2f}{row['mean_us']:>10.2f}")
    print(
        f"UnleashClient / ours at p50: {result['ratio_p50']:.1f}x; "
        f"answers agree on {result['agreement']} users"
    )
    write_result("flags_decision", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
