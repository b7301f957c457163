"""Shared by the benchmarks: what each needs before it starts (checked, or prepared: the benchmark
database), servers on free ports, wrk runs and their numbers."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
# BENCH_RESULTS moves the output (the harness tests write to a temporary directory).
RESULTS = Path(os.environ.get("BENCH_RESULTS", ROOT / "bench" / "results"))
# The PostgreSQL database of the benchmarks that need one (created, migrated and seeded on first use).
PG_BENCH_URL = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/shop_bench")
REDIS_ADDRESS = ("127.0.0.1", 6379)
POSTGRES_ADDRESS = ("127.0.0.1", 5432)
UNLEASH_PACKAGE = ROOT / ".cache" / "node" / "node_modules" / "unleash-server" / "package.json"


@dataclass(frozen=True, kw_only=True)
class Needs:
    """What a benchmark needs that ``make install`` does not give it; each script declares its ``NEEDS``.

    ``make bench`` depends on every target ``make_targets()`` names (a test checks it), so a benchmark
    run alone says which target to run instead of failing half-way.
    """

    executables: tuple[str, ...] = ()  # Debian packages: make bench-tools
    modules: tuple[str, ...] = ()  # the [bench] extra: make bench-tools
    unleash: bool = False  # unleash-server under .cache/node and node: make node-deps
    redis: bool = False  # the local Redis (database 14; the tests use 15)
    postgres: bool = False  # the local PostgreSQL

    def make_targets(self) -> set[str]:
        targets = set()
        if self.executables or self.modules:
            targets.add("bench-tools")
        if self.unleash:
            targets.add("node-deps")
        return targets


def _reachable(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=1).close()
    except OSError:
        return False
    return True


def missing(needs: Needs) -> str | None:
    """The first prerequisite that is not there, as one line saying what to do; None when all are."""
    for name in needs.executables:
        if shutil.which(name) is None:
            return f"{name} is not installed: run make bench-tools"
    for module in needs.modules:
        if importlib.util.find_spec(module) is None:
            return f"the Python package {module} is not installed: run make bench-tools"
    if needs.unleash and not (UNLEASH_PACKAGE.exists() and shutil.which("node")):
        return "unleash-server (under .cache/node) or node is not installed: run make node-deps"
    if needs.redis and not _reachable(*REDIS_ADDRESS):
        return "Redis is not reachable on {}:{}: start the local Redis".format(*REDIS_ADDRESS)
    if needs.postgres and not _reachable(*POSTGRES_ADDRESS):
        return "PostgreSQL is not reachable on {}:{}: start the local PostgreSQL".format(*POSTGRES_ADDRESS)
    return None


def require(needs: Needs) -> None:
    """Exit with status 2 and one line on stderr if a prerequisite is missing."""
    problem = missing(needs)
    if problem:
        print(f"{Path(sys.argv[0]).name}: {problem}", file=sys.stderr)
        raise SystemExit(2)


def ensure_database(url: str) -> None:
    """Create the PostgreSQL database ``url`` names if it does not exist (other URLs: nothing to do)."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgres", "postgresql"):
        return
    import psycopg

    name = parts.path.lstrip("/")
    admin = parts._replace(scheme="postgresql", path="/postgres", query="").geturl()
    try:
        with psycopg.connect(admin, autocommit=True, connect_timeout=5) as connection:
            if not connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
                connection.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        print(f"cannot create the benchmark database {name!r} at {parts.hostname}: {first}", file=sys.stderr)
        raise SystemExit(2) from None


def prepare_database(env: Mapping[str, str], *, signing_keys: bool = False) -> None:
    """Create (PostgreSQL), migrate and seed (large, once) the database ``env`` points the monolith at.

    The default is the SQLite file under VAR_DIR that ``make run`` uses; seeding leaves a database
    that already has data alone. ``signing_keys`` also creates the token signing key under VAR_DIR.
    """
    Path(env.get("VAR_DIR", ROOT / "var")).mkdir(parents=True, exist_ok=True)
    ensure_database(env.get("DATABASE_URL", ""))
    steps = [
        ["migrate", "-v0"],
        *([["signing_keys", "ensure"]] if signing_keys else []),
        ["seed", "--scale", "large"],
    ]
    for args in steps:
        subprocess.run([sys.executable, "-m", "legacy_django", *args], env=dict(env), cwd=ROOT, check=True)


def legacy_command(port: int, workers: int = 1, threads: int = 4) -> list[str]:
    """The monolith as make run serves it (gunicorn gthread), on ``port``."""
    return [
        str(Path(sys.executable).parent / "gunicorn"),
        "legacy_django.config.wsgi:application",
        f"--bind=127.0.0.1:{port}",
        "--worker-class=gthread",
        f"--workers={workers}",
        f"--threads={threads}",
        "--no-control-socket",
    ]


def write_result(name: str, data: object) -> Path:
    """bench/results/<name>.json"""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=2))
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def server_process(
    command: list[str], env: Mapping[str, str], port: int, log: Path | None = None
) -> Iterator[tuple[str, int]]:
    """Start ``command``; yields its URL (once ``port`` accepts) and its pid; stops it after.
    Its output goes to ``log`` if given (else nowhere)."""
    sink = log.open("wb") if log is not None else None
    output = sink if sink is not None else subprocess.DEVNULL
    try:
        process = subprocess.Popen(command, env=dict(env), cwd=ROOT, stdout=output, stderr=output)
    finally:
        if sink is not None:
            sink.close()  # the child has its own copy
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
        yield f"http://127.0.0.1:{port}", process.pid
    finally:
        process.terminate()
        process.wait(timeout=10)


@contextmanager
def server(command: list[str], env: Mapping[str, str], port: int) -> Iterator[str]:
    with server_process(command, env, port) as (url, _):
        yield url


def wrk(
    url: str, *, duration: int, connections: int, headers: Mapping[str, str] | None = None, threads: int = 1
) -> dict[str, float]:
    """req/s, p50 and p99 in ms, and non-2xx count from one wrk run."""
    args = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency"]
    for name, value in (headers or {}).items():
        args += ["-H", f"{name}: {value}"]
    output = subprocess.run([*args, url], capture_output=True, text=True, check=True).stdout
    return parse_wrk(output)


def parse_wrk(output: str) -> dict[str, float]:
    """req/s, p50 and p99 in ms, and the non-2xx count from wrk's --latency output."""
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}

    def latency(label: str) -> float:
        match = re.search(rf"{label}\s+([\d.]+)(us|ms|s)", output)
        return float(match.group(1)) * scale[match.group(2)] if match else float("nan")

    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return {
        "rps": float(rps.group(1)) if rps else 0.0,
        "p50_ms": latency("50%"),
        "p99_ms": latency("99%"),
        "non_2xx": float(non_2xx.group(1)) if non_2xx else 0.0,
    }


def latency_summary(samples_ms: list[float]) -> dict[str, float]:
    """p50, p99 and max of a list of latencies in milliseconds."""
    ordered = sorted(samples_ms)
    return {
        "p50_ms": ordered[len(ordered) // 2],
        "p99_ms": ordered[int(len(ordered) * 0.99)],
        "max_ms": ordered[-1],
    }
