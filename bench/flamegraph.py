"""A py-spy flame graph of one gateway worker at saturation, on the proxy benchmark's path.

    .venv/bin/python bench/flamegraph.py --out docs/images/gateway-flame-native.svg [--server native]
        [--seconds 10]

The same stack as bench/proxy_overhead.py (nginx backend serving a ~1 KB JSON and the JWKS, a route
that needs a JWT and takes a flag decision), one gateway worker on ``--server``, wrk -t2 -c64 for the
whole recording. py-spy samples wall-clock time (at 100 Hz, without pausing the worker): on a
2-core machine shared with wrk and nginx, a frame that is inside a system call (a socket write) also
collects the time the kernel spent scheduling the others, so read the widths of the Python frames
against each other, and CPU per request from bench/proxy_overhead.py. Needs nginx, wrk and py-spy
(`make bench-tools`).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._support import Needs, free_port, require, server_process
from bench.proxy_overhead import PATH, gateway_env, nginx_conf, prepare

NEEDS = Needs(executables=("nginx", "wrk"))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, required=True, help="the SVG to write")
    parser.add_argument("--server", choices=("native", "uvicorn"), default="native")
    parser.add_argument("--seconds", type=int, default=10)
    options = parser.parse_args()
    require(NEEDS)
    py_spy = Path(sys.executable).with_name("py-spy")
    if not py_spy.exists():
        print("error: py-spy is not installed (make bench-tools)", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="flamegraph-"))
    auth = prepare(work)
    backend, proxy = free_port(), free_port()
    conf = nginx_conf(work, backend, proxy)
    with ExitStack() as stack:
        stack.enter_context(server_process(["nginx", "-c", str(conf)], dict(os.environ), backend))
        port = free_port()
        env = {**gateway_env(work, port, 1, f"http://127.0.0.1:{backend}"), "GATEWAY_SERVER": options.server}
        url, pid = stack.enter_context(server_process([sys.executable, "-m", "gateway"], env, port))
        load = subprocess.Popen(
            [
                "wrk",
                "-t2",
                "-c64",
                f"-d{options.seconds + 3}s",
                "-H",
                f"Authorization: {auth['Authorization']}",
                f"{url}{PATH}",
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        options.out.parent.mkdir(parents=True, exist_ok=True)
        recorded = subprocess.run(
            [
                str(py_spy),
                "record",
                "--pid",
                str(pid),
                "--duration",
                str(options.seconds),
                "--rate",
                "100",
                "--nonblocking",
                "--format",
                "flamegraph",
                "--output",
                str(options.out),
            ],
            capture_output=True,
            text=True,
        )
        output, _ = load.communicate()
    if recorded.returncode != 0:
        print(f"error: py-spy failed: {recorded.stderr.strip()}", file=sys.stderr)
        return 1
    rate = next((line for line in output.splitlines() if line.startswith("Requests/sec")), "?")
    print(f"wrote {options.out} ({options.server}, {rate.strip()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
