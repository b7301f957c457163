"""A stand-in gateway worker: owns a RedisOverrideStore and prints each new override state as a JSON line.

    python -m tests.support.override_worker REDIS_URL

Line: {"pid": ..., "t": <time.time() when this process first saw the state>, "overrides": {route: backend}}
Used by the multi-process test and by bench/override_propagation.py.
"""

from __future__ import annotations

import json
import os
import sys
import time

from flags.overrides import RedisOverrideStore


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
