"""``make run``: prepare the embedded defaults, start every server of the stack and keep it running.

The stack: the legacy monolith (gunicorn, LEGACY_URL, default :8001), the reviews
and recommendations services (uvicorn, REVIEWS_URL :8002, RECOMMENDATIONS_URL :8003),
the payments service (PAYMENTS_URL :8005) with a provider simulator for each payment provider
on this machine (PAYMENTS_PROVIDERS: pg-a :8101, pg-b :8102), the catalog view server
(CATALOG_URL :8004) with the event relay that keeps its view (``python -m events relay``: without
BROKER_URL it applies the events itself, in-process; with it, it publishes to RabbitMQ and a catalog
consumer runs too; ADR 0018),
all on one database, and the gateway in front of them (GATEWAY_PORT, :8000) with
file-based flags and overrides under var/.  Settings come from
the environment (see docs/configuration in the README), so the same command
can start the stack on other ports or against PostgreSQL (DATABASE_URL).

This module owns the servers' lifecycle. Start-up is fail-fast: the servers start one after the
other and each must answer its health check, or the whole stack stops (a server that cannot come up
once has a configuration problem that restarting will not fix). After the banner it is a supervisor:
a server that exits is restarted after a backoff (RUN_STACK_RESTART_DELAY, 0.5 s, doubling to
10 s, back to the first delay once a server has stayed up 30 s) while the others keep serving, as a
product that promises to survive a dying backend must. Ctrl-C, SIGTERM or SIGHUP stop every server.
Each server runs in its own process group, so its workers (gunicorn's, uvicorn's) are stopped with
it and never outlive it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from urllib.parse import urlsplit

from flags import ensure_flags_file, load_flags_settings
from services.payments.settings import DEFAULT_PROVIDERS, parse_providers

ROOT = Path(__file__).resolve().parents[1]

PYTHON = sys.executable
BIN = Path(PYTHON).parent
POLL_SECONDS = 0.1


@dataclass(frozen=True, kw_only=True, slots=True)
class Server:
    name: str
    url: str  # for a worker without HTTP (health_path None): what the banner says it does
    health_path: str | None
    command: list[str]


@dataclass(frozen=True, kw_only=True, slots=True)
class RestartPolicy:
    first_delay: float = 0.5
    max_delay: float = 10.0
    # A server that stayed up this long is healthy again: its next crash waits only first_delay.
    stable_after: float = 30.0


def restart_policy(env: Mapping[str, str]) -> RestartPolicy:
    default = RestartPolicy()
    raw = env.get("RUN_STACK_RESTART_DELAY", "")
    try:
        first = float(raw) if raw else default.first_delay
    except ValueError:
        first = -1.0
    if not first > 0:
        raise SystemExit(f"RUN_STACK_RESTART_DELAY must be a positive number of seconds, got {raw!r}")
    return RestartPolicy(first_delay=first, max_delay=max(first, default.max_delay))


def restart_delay(policy: RestartPolicy, streak: int) -> float:
    """Seconds before the restart that ends crash number ``streak`` (1-based) of a series."""
    return min(policy.max_delay, policy.first_delay * 2.0 ** min(streak - 1, 32))


def next_streak(policy: RestartPolicy, streak: int, uptime: float) -> int:
    """The crash series a server is in after it exited having run ``uptime`` seconds."""
    return 1 if uptime >= policy.stable_after else streak + 1


def describe_exit(returncode: int) -> str:
    """``status 3`` for an exit, ``signal SIGKILL`` for a death by signal (Popen's negative codes)."""
    if returncode >= 0:
        return f"status {returncode}"
    try:
        return f"signal {signal.Signals(-returncode).name}"
    except ValueError:
        return f"signal {-returncode}"


def _host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 80


def servers(env: Mapping[str, str]) -> list[Server]:
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
        for name, port in (("reviews", 8002), ("recommendations", 8003), ("catalog", 8004))
    ]
    payments = Server(
        name="payments",
        url=env.get("PAYMENTS_URL", "http://127.0.0.1:8005"),
        health_path="/health",
        command=[PYTHON, "-m", "services.payments"],
    )
    gateway = Server(
        name="gateway",
        url=f"http://127.0.0.1:{env.get('GATEWAY_PORT', '8000')}",
        health_path="/_gateway/health",
        command=[PYTHON, "-m", "gateway"],
    )
    return [legacy, *services, *event_workers(env), *simulators(env), payments, gateway]


def event_workers(env: Mapping[str, str]) -> list[Server]:
    """The relay and, with a broker, the catalog consumer: processes without HTTP (ADR 0018)."""
    broker = env.get("BROKER_URL", "")
    relay = Server(
        name="relay",
        url=f"outbox → RabbitMQ {broker.rpartition('@')[2]}"
        if broker
        else "outbox → catalog view (embedded)",
        health_path=None,
        command=[PYTHON, "-m", "events", "relay"],
    )
    if not broker:
        return [relay]
    consumer = Server(
        name="catalog-consumer",
        url="RabbitMQ → catalog view",
        health_path=None,
        command=[PYTHON, "-m", "events", "consume", "catalog"],
    )
    return [relay, consumer]


def simulators(env: Mapping[str, str]) -> list[Server]:
    """A provider simulator for each payment provider on this machine (PAYMENTS_PROVIDERS, by default
    a on :8101 and b on :8102); a provider elsewhere is a real one and is not started here."""
    started = []
    for provider in parse_providers(env.get("PAYMENTS_PROVIDERS") or DEFAULT_PROVIDERS):
        host, port = _host_port(provider.url)
        if host not in {"127.0.0.1", "localhost"}:
            continue
        started.append(
            Server(
                name=f"pg-{provider.name}",
                url=provider.url,
                health_path="/health",
                command=[
                    PYTHON,
                    "-m",
                    "services.payments.simulator",
                    "--name",
                    provider.name,
                    "--host",
                    host,
                    "--port",
                    str(port),
                ],
            )
        )
    return started


def prepare(env: dict[str, str]) -> None:
    """Migrate, make the signing key, seed once (the seed command skips a database with data), and
    write the flags file on first start (one flag per route of the route table, all off: every hot
    route on legacy)."""
    manage = [PYTHON, "-m", "legacy_django"]
    Path(env.get("VAR_DIR", ROOT / "var")).mkdir(parents=True, exist_ok=True)
    for args in (
        ["migrate", "--noinput", "-v0"],
        ["signing_keys", "ensure"],
        ["seed", "--scale", env["SEED_SCALE"]],
    ):
        subprocess.run(manage + args, env=env, cwd=ROOT, check=True)
    # The catalog view from the tables (items already in it keep a newer version); events follow.
    subprocess.run([PYTHON, "-m", "services.catalog", "rebuild", "--once"], env=env, cwd=ROOT, check=True)
    ensure_flags_file(load_flags_settings(env))


def _healthy(server: Server) -> bool:
    if server.health_path is None:
        return True  # a worker without HTTP: running is all it can show (an exit is a restart)
    try:
        with urllib.request.urlopen(server.url + server.health_path, timeout=1):  # noqa: S310 - our own URL
            return True
    except (urllib.error.URLError, OSError):
        return False


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    # Only while the leader runs or right after it was reaped: the id is still this server's group.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


@dataclass(kw_only=True, slots=True)
class Child:
    """A server and its current process; ``restart_at`` is set while it waits to be restarted."""

    server: Server
    process: subprocess.Popen[bytes]
    started_at: float
    restarts: int = 0
    streak: int = 0
    restart_at: float | None = None


class StartupError(Exception):
    """A server exited or stayed unhealthy while the stack was starting."""


class Supervisor:
    """Starts the servers, restarts the ones that exit, stops them all (workers included)."""

    def __init__(
        self,
        env: Mapping[str, str],
        policy: RestartPolicy,
        log: Callable[[str], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.env = dict(env)
        self.policy = policy
        self.log = log
        self.clock = clock
        self.children: list[Child] = []
        self.stop_requested: str | None = None

    def request_stop(self, signum: int, _frame: FrameType | None = None) -> None:
        """Signal handler: only records the wish; the loop stops between two steps."""
        self.stop_requested = signal.Signals(signum).name

    def _spawn(self, server: Server) -> subprocess.Popen[bytes]:
        # Own session and process group: the terminal's Ctrl-C reaches only us (stop() then stops
        # every server), and killpg reaches the server's workers too.
        return subprocess.Popen(server.command, env=self.env, cwd=ROOT, start_new_session=True)

    def start(self, server: Server, timeout: float = 30.0) -> None:
        """Start ``server`` and wait until it answers its health check (or a stop is requested)."""
        process = self._spawn(server)
        self.children.append(Child(server=server, process=process, started_at=self.clock()))
        self.log(f"started {server.name} (pid {process.pid})")
        deadline = self.clock() + timeout
        while not self.stop_requested and not _healthy(server):
            if process.poll() is not None:
                _signal_group(process.pid, signal.SIGKILL)
                raise StartupError(
                    f"{server.name} exited with {describe_exit(process.returncode)} while starting"
                )
            if self.clock() > deadline:
                raise StartupError(f"{server.name} did not answer {server.health_path} within {timeout:.0f}s")
            time.sleep(0.2)

    def check(self) -> None:
        """One supervision step: note the servers that exited, restart those whose delay is over."""
        now = self.clock()
        for child in self.children:
            if child.restart_at is None and child.process.poll() is not None:
                # A dead master can leave workers behind that hold its port (uvicorn's keep serving).
                _signal_group(child.process.pid, signal.SIGKILL)
                child.streak = next_streak(self.policy, child.streak, now - child.started_at)
                child.restarts += 1
                delay = restart_delay(self.policy, child.streak)
                child.restart_at = now + delay
                self.log(
                    f"{child.server.name} (pid {child.process.pid}) exited with "
                    f"{describe_exit(child.process.returncode)}; restart {child.restarts} in {delay:g}s"
                )
            elif child.restart_at is not None and now >= child.restart_at:
                child.process = self._spawn(child.server)
                child.started_at, child.restart_at = now, None
                self.log(f"restarted {child.server.name} (pid {child.process.pid}, restart {child.restarts})")

    def run(self) -> None:
        while not self.stop_requested:
            self.check()
            time.sleep(POLL_SECONDS)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM every server's group, wait for them, then SIGKILL whatever is left of each group."""
        # Every group, even one whose leader already exited: its workers may still hold the port.
        processes = [child.process for child in self.children]
        for process in processes:
            _signal_group(process.pid, signal.SIGTERM)
        deadline = self.clock() + timeout
        for process in processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=max(0.0, deadline - self.clock()))
            _signal_group(process.pid, signal.SIGKILL)
            process.wait()


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
        f"  curl -s '{gateway}/api/v1/catalog/items?ids=1,2,3'  (flagctl moves catalog.* to the view)",
        "",
        "Payment providers are simulators; take one down: curl -X POST "
        + next((f"{s.url}/_sim/faults" for s in started if s.name.startswith("pg-")), "PG/_sim/faults")
        + ' -d \'{"mode": "down"}\'',
        "",
        f"Ops console: {gateway}/_gateway/console/",
        "  (admin token: $GATEWAY_ADMIN_TOKEN, default dev-only-admin-token)",
        "Move routes: .venv/bin/flagctl status | flip-all --to candidate --reason ...",
        "",
        "A server that exits is restarted; Ctrl-C stops everything.",
    ]
    return "\n".join(lines)


def _log(message: str) -> None:
    print(f"[run_stack] {message}", flush=True)


def main() -> int:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": os.environ.get(
            "DJANGO_SETTINGS_MODULE", "legacy_django.config.django.local"
        ),
    }
    env.setdefault("SEED_SCALE", "large")
    supervisor = Supervisor(env, restart_policy(env), _log)
    prepare(env)
    # Explicitly for SIGINT too, because a shell that starts us in the background ignores it by default.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, supervisor.request_stop)
    try:
        stack = servers(env)
        for server in stack:
            supervisor.start(server)
        if not supervisor.stop_requested:
            print(banner(stack), flush=True)
        supervisor.run()
        _log(f"{supervisor.stop_requested}: stopping the stack")
        return 0
    except StartupError as exc:
        _log(f"{exc}; stopping the stack")
        return 1
    finally:
        # A second Ctrl-C must not cut the stopping short and leave servers behind.
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        supervisor.stop()


if __name__ == "__main__":
    sys.exit(main())
