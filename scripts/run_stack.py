"""``make run``: prepare the embedded defaults and start every server of the stack; Ctrl-C stops all.

The stack: the legacy monolith (gunicorn, LEGACY_URL, default :8001), the reviews
and recommendations services (uvicorn, REVIEWS_URL :8002, RECOMMENDATIONS_URL :8003),
all on one database, and the gateway in front of them (GATEWAY_PORT, :8000) with
file-based flags and overrides under var/.  Settings come from
the environment (see docs/configuration in the README), so the same command
can start the stack on other ports or against PostgreSQL (DATABASE_URL).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from flags import ensure_flags_file, load_flags_settings

ROOT = Path(__file__).resolve().parents[1]

PYTHON = sys.executable
BIN = Path(PYTHON).parent


@dataclass(frozen=True, kw_only=True, slots=True)
class Server:
    name: str
    url: str
    health_path: str
    command: list[str]


def _host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 80


def servers(env: dict[str, str]) -> list[Server]:
    legacy_url = env.get("LEGACY_URL", "http://127.0.0.1:8001")
    host, port = _host_port(legacy_url)
    legacy = Server(
        name="legacy",
        url=legacy_url,
        health_path="/health",
        command=[
            str(BIN / "gunicorn"),
            "legacy_django.config.wsgi:application",
            f"--bind={host}:{port}",
            "--worker-class=gthread",
            f"--workers={env.get('LEGACY_WORKERS', '2')}",
            f"--threads={env.get('LEGACY_THREADS', '4')}",
            "--no-control-socket",
            "--access-logfile=-",
        ],
    )
    services = [
        Server(
            name=name,
            url=env.get(f"{name.upper()}_URL", f"http://127.0.0.1:{port}"),
            health_path="/health",
            command=[PYTHON, "-m", f"services.{name}"],
        )
        for name, port in (("reviews", 8002), ("recommendations", 8003))
    ]
    gateway = Server(
        name="gateway",
        url=f"http://127.0.0.1:{env.get('GATEWAY_PORT', '8000')}",
        health_path="/_gateway/health",
        command=[PYTHON, "-m", "gateway"],
    )
    return [legacy, *services, gateway]


def prepare(env: dict[str, str]) -> None:
    """Migrate, make the signing key, seed once (the seed command skips a database with data), and
    copy the shipped flags file (every hot route on legacy) on first start."""
    manage = [PYTHON, "-m", "legacy_django"]
    Path(env.get("VAR_DIR", ROOT / "var")).mkdir(parents=True, exist_ok=True)
    for args in (
        ["migrate", "--noinput", "-v0"],
        ["signing_keys", "ensure"],
        ["seed", "--scale", env["SEED_SCALE"]],
    ):
        subprocess.run(manage + args, env=env, cwd=ROOT, check=True)
    ensure_flags_file(load_flags_settings(env))


def wait_healthy(server: Server, process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{server.name} exited with status {process.returncode} while starting")
        try:
            with urllib.request.urlopen(server.url + server.health_path, timeout=1):  # noqa: S310 - our own URL
                return
        except (urllib.error.URLError, OSError):
            time.sleep(0.2)
    raise SystemExit(f"{server.name} did not answer {server.health_path} within {timeout:.0f}s")


def banner(started: list[Server]) -> str:
    gateway = next(s.url for s in started if s.name == "gateway")
    lines = ["", "The stack is up:"]
    lines += [f"  {s.name:<16} {s.url}" for s in started]
    lines += [
        "",
        "Demo users: demo1 ... demo5, password demo-password",
        "Try:",
        f"  TOKEN=$(curl -s -X POST {gateway}/api/v1/auth/token -H 'Content-Type: application/json' \\",
        '      -d \'{"username":"demo1","password":"demo-password"}\' \\',
        "      | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"access_token\"])')",
        f"  curl -s -H \"Authorization: Bearer $TOKEN\" '{gateway}/api/v1/reviews/items/1?size=3'",
        "",
        f"Ops console: {gateway}/_gateway/console/",
        "  (admin token: $GATEWAY_ADMIN_TOKEN, default dev-only-admin-token)",
        "Move routes: .venv/bin/flagctl status | flip-all --to candidate --reason ...",
        "",
        "Ctrl-C stops everything.",
    ]
    return "\n".join(lines)


def main() -> int:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": os.environ.get(
            "DJANGO_SETTINGS_MODULE", "legacy_django.config.django.local"
        ),
    }
    env.setdefault("SEED_SCALE", "large")
    prepare(env)
    processes: list[tuple[Server, subprocess.Popen[bytes]]] = []

    def stop(*_: object) -> None:
        for _, process in processes:
            if process.poll() is None:
                process.terminate()
        for _, process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()

    signal.signal(signal.SIGTERM, lambda *_: (stop(), sys.exit(0)))
    # Explicitly, because a shell that starts us in the background makes SIGINT ignored by default.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        for server in servers(env):
            process = subprocess.Popen(server.command, env=env, cwd=ROOT)
            processes.append((server, process))
            wait_healthy(server, process)
        print(banner([server for server, _ in processes]), flush=True)
        while True:
            for server, process in processes:
                if process.poll() is not None:
                    print(
                        f"{server.name} exited with status {process.returncode}; stopping the stack",
                        flush=True,
                    )
                    return 1
            time.sleep(0.5)
    except KeyboardInterrupt:
        print("\nstopping...", flush=True)
        return 0
    finally:
        stop()


if __name__ == "__main__":
    sys.exit(main())
