"""Legacy vs the new services, one worker each, same database, same load (wrk).

    .venv/bin/python bench/legacy_vs_service.py [--duration 8] [--connections 16]

Starts the monolith (gunicorn, 1 gthread worker x 4 threads) and each service (uvicorn,
1 worker) on free ports over the database DATABASE_URL names (default: the SQLite file
`make run` seeds; seeded here if empty), runs wrk against each hot read as the same
signed-in user, and prints req/s and p99 side by side with the ratio. Writes
bench/results/legacy_vs_service.json. Loopback only, bounded by --duration.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import identity

BIN = Path(sys.executable).parent
SECRET = "bench-identity-secret"  # noqa: S105 - a throwaway secret for local servers
ENDPOINTS = [
    ("reviews.list", "reviews", "/api/v1/reviews/items/1", "size=20"),
    ("reviews.summary", "reviews", "/api/v1/reviews/items/1/summary", ""),
    ("recommendations.home", "recommendations", "/api/v1/recommendations/home", "limit=10"),
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def _server(command: list[str], env: dict[str, str], port: int) -> Iterator[str]:
    process = subprocess.Popen(
        command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"{command[0]} did not start") from None
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def _wrk(url: str, path: str, query: str, duration: int, connections: int) -> dict[str, float]:
    # Signed for a minute ahead: the assertion is valid +/- 30 s, so sign with the run's midpoint.
    headers = identity.sign(
        SECRET,
        method="GET",
        path=path,
        user_id="1",
        scopes="user",
        request_id="bench",
        timestamp=int(time.time()) + duration // 2,
    )
    args = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency"]
    for name, value in headers.items():
        args += ["-H", f"{name}: {value}"]
    output = subprocess.run(
        [*args, f"{url}{path}?{query}"], capture_output=True, text=True, check=True
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", output)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    p99_ms = float(p99.group(1)) * scale[p99.group(2)] if p99 else float("nan")
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return {"rps": rps, "p99_ms": p99_ms, "non_2xx": float(non_2xx.group(1)) if non_2xx else 0.0}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=8)
    parser.add_argument("--connections", type=int, default=16)
    options = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 2
    env = {
        **os.environ,
        "IDENTITY_SECRET": SECRET,
        "DJANGO_SETTINGS_MODULE": "legacy_django.config.django.local",
    }
    for args in (["migrate", "-v0"], ["seed", "--scale", "large"]):
        subprocess.run([sys.executable, "-m", "legacy_django", *args], env=env, cwd=ROOT, check=True)
    ports = {name: _free_port() for name in ("legacy", "reviews", "recommendations")}
    commands = {
        "legacy": [
            str(BIN / "gunicorn"),
            "legacy_django.config.wsgi:application",
            f"--bind=127.0.0.1:{ports['legacy']}",
            "--worker-class=gthread",
            "--workers=1",
            "--threads=4",
            "--no-control-socket",
        ],
        "reviews": [sys.executable, "-m", "services.reviews"],
        "recommendations": [sys.executable, "-m", "services.recommendations"],
    }
    env.update(
        {f"{name.upper()}_URL": f"http://127.0.0.1:{ports[name]}" for name in ("reviews", "recommendations")}
    )
    results = []
    with ExitStack() as stack:
        urls = {name: stack.enter_context(_server(commands[name], env, ports[name])) for name in commands}
        header = ("route", "legacy req/s", "service req/s", "ratio", "legacy p99", "svc p99")
        print("{:<24}{:>14}{:>15}{:>8}{:>12}{:>10}".format(*header))
        for route, service, path, query in ENDPOINTS:
            legacy = _wrk(urls["legacy"], path, query, options.duration, options.connections)
            candidate = _wrk(urls[service], path, query, options.duration, options.connections)
            ratio = candidate["rps"] / legacy["rps"]
            results.append({"route": route, "legacy": legacy, "service": candidate, "ratio": ratio})
            print(
                f"{route:<24}{legacy['rps']:>14.0f}{candidate['rps']:>15.0f}{ratio:>7.1f}x"
                f"{legacy['p99_ms']:>10.1f}ms{candidate['p99_ms']:>8.1f}ms"
            )
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    settings = {"duration_s": options.duration, "connections": options.connections, "workers": 1}
    (out / "legacy_vs_service.json").write_text(
        json.dumps({"settings": settings, "results": results}, indent=2)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
