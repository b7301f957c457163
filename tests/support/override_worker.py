"""A stand-in gateway worker: owns a RedisOverrideStore and prints each new override state as a JSON line.

    python -m tests.support.override_worker REDIS_URL

Line: {"pid": ..., "t": <time.time() when this process first saw the state>, "overrides": {route: backend}}
Used by the multi-process test and by bench/override_propagation.py.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

from flags.overrides import RedisOverrideStore

ROOT = Path(__file__).resolve().parents[2]


def start_workers(count: int, redis_url: str) -> tuple[list[subprocess.Popen[str]], queue.Queue[dict]]:
    """Start ``count`` workers; their JSON lines arrive on the queue. Waits until all are ready."""
    lines: queue.Queue[dict] = queue.Queue()
    workers = []
    for _ in range(count):
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.support.override_worker", redis_url],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        workers.append(process)

        def pump(stream=process.stdout) -> None:
            for line in stream:  # type: ignore[union-attr]
                lines.put(json.loads(line))

        threading.Thread(target=pump, daemon=True).start()
    ready: set[int] = set()
    while len(ready) < count:
        line = lines.get(timeout=30)
        if line.get("ready"):
            ready.add(line["pid"])
    return workers, lines


def stop_workers(workers: list[subprocess.Popen[str]]) -> None:
    for process in workers:
        process.terminate()
        process.wait(timeout=5)
        if process.stdout is not None:
            process.stdout.close()


def main() -> None:
    store = RedisOverrideStore(sys.argv[1])
    store.start()
    last: dict[str, str] | None = None
    print(json.dumps({"pid": os.getpid(), "t": time.time(), "ready": True}), flush=True)
    try:
        while True:
            state = {
                route: o.backend + (f":{o.percent}" if o.percent is not None else "")
                for route, o in store.snapshot().items()
            }
            if state != last:
                print(json.dumps({"pid": os.getpid(), "t": time.time(), "overrides": state}), flush=True)
                last = state
            time.sleep(0.0005)
    except (KeyboardInterrupt, BrokenPipeError):
        pass
    finally:
        store.stop()


if __name__ == "__main__":
    main()
