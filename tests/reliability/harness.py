"""Faults under a steady load through the gateway, measured (ADR 0019's reliability part).

A stack of its own: a seeded SQLite database; the monolith (gunicorn) and the reviews service as
restartable process groups on fixed ports; a real Unleash server (tests/support/unleash.py, its own
PostgreSQL database) that alone sends the reviews routes to their candidate (the flags file has every
route off), polled by the gateway every second; one gateway, its JWKS fetched through a TCP proxy and
its override store in Redis (database 13, its own) through a proxy that can cut and a blackhole that
can go silent: never the machine's Redis itself.

``run(stack, scenario)`` keeps a load going (reads of a candidate route and of a legacy route, and
orders with an ``Idempotency-Key``, retried once with the same key after a 5xx or a network error, as
apps do), applies the fault, lifts it, and returns a ``Result``: the error rate while the fault lasts
(5xx and network errors; 4xx are answers), the time from lifting it until the last error (and, for the
candidate, until it serves again), how many candidate reads another backend answered from then on,
and the write check: every 201 order is in the database, no request wrote two orders.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import resource
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from flags import default_flags, flag_key, route_ids
from flags.routes_file import SHIPPED_ROUTES_FILE
from gateway.settings import default_max_connections
from tests.support.blackhole import Blackhole
from tests.support.servers import BIN, free_port, legacy_env, seeded_copies
from tests.support.tcp_proxy import TcpProxy
from tests.support.unleash import UnleashServer, unleash_server
from tests.support.waiting import eventually

SECRET = "reliability-identity-secret"
REDIS = ("127.0.0.1", 6379)
REDIS_DB = 13  # the tests use 15 and the benchmarks 14
CANDIDATE_READ = "/api/v1/reviews/items/{}/summary"  # reviews.summary: on the reviews service here
LEGACY_READ = "/api/v1/items/{}"
USERS = [f"demo{n}" for n in range(1, 6)]
ADMIN_TOKEN = "reliability-admin-token"
UNLEASH_REFRESH_SECONDS = 1.0  # the gateway's poll of Unleash (15 s by default)
CHANGED_ROUTE = "reviews.list"  # its rollout is changed in Unleash after the outage; not in the load
# The slow-client attack (tests/reliability/resources.py) waits for these: shorter than the defaults
# (10 s, 15 s) to keep the run brief; the mechanism is the same.
HEADER_TIMEOUT_SECONDS = 5.0
BODY_TIMEOUT_SECONDS = 5.0
# The attack holds 5,000 idle and 500 slow connections from this process, the gateway its share of them.
OPEN_FILES_WANTED = 8192


class Server:
    """A server in its own process group on a fixed port: killed, stopped, resumed, restarted."""

    def __init__(
        self,
        name: str,
        command: list[str],
        env: dict[str, str],
        port: int,
        log: Path,
        health: str = "/health",
    ) -> None:
        self.name, self.command, self.env, self.port, self.log = name, command, env, port, log
        self.health = health
        self.url = f"http://127.0.0.1:{port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                self.command, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        assert eventually(self._answers, timeout=30), (
            f"{self.name} did not start: {self.log.read_text()[-2000:]}"
        )

    def _answers(self) -> bool:
        try:
            return httpx.get(f"{self.url}{self.health}", timeout=1).status_code < 500
        except httpx.HTTPError:
            return False

    def signal(self, sig: signal.Signals) -> None:
        assert self.process is not None
        os.killpg(self.process.pid, sig)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        assert self.process is not None
        self.process.wait()

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.signal(signal.SIGCONT)
            self.signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            self.process.wait()


@dataclass
class Stack:
    gateway: str
    legacy: Server
    candidate: Server
    gateway_server: Server
    unleash: UnleashServer
    max_connections: int  # the gateway's connection cap (one worker): its default at this open-file limit
    jwks: TcpProxy
    redis_cut: TcpProxy
    redis_silent: Blackhole
    database: Path
    tokens: list[str]
    option_ids: list[int]


def raise_open_files(wanted: int = OPEN_FILES_WANTED) -> int:
    """The soft open-file limit raised towards ``wanted`` (never past the hard limit); the servers
    started after this inherit it. Returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


def route_state(gateway: str, route: str) -> dict[str, object]:
    """The route's row of the gateway's admin API: backend, percent, source (unleash, file...), reason."""
    response = httpx.get(
        f"{gateway}/_gateway/admin/routes", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=5
    )
    response.raise_for_status()
    row: dict[str, object] = next(r for r in response.json()["routes"] if r["route"] == route)
    return row


def _routed_by_unleash(gateway: str, route: str, percent: int) -> bool:
    try:
        state = route_state(gateway, route)
    except httpx.HTTPError:
        return False
    return (state["source"], state["percent"]) == ("unleash", percent)


def flag_change_seconds(stack: Stack, route: str = CHANGED_ROUTE, timeout: float = 30.0) -> float:
    """A rollout change made in Unleash's admin API: seconds until the gateway decides by it
    (``math.inf`` if it did not within ``timeout``)."""
    target = 60 if route_state(stack.gateway, route)["percent"] == 40 else 40
    started = time.monotonic()
    stack.unleash.rollout(flag_key(route), target)
    if not eventually(lambda: _routed_by_unleash(stack.gateway, route, target), timeout, interval=0.05):
        return math.inf
    return time.monotonic() - started


@contextlib.contextmanager
def stack(work: Path) -> Iterator[Stack]:
    with contextlib.ExitStack() as exits, seeded_copies(work, ("shared",), None, SECRET) as urls:
        exits.callback(resource.setrlimit, resource.RLIMIT_NOFILE, resource.getrlimit(resource.RLIMIT_NOFILE))
        raise_open_files()
        max_connections = default_max_connections()  # what the gateway, inheriting the limit, would take
        unleash = exits.enter_context(unleash_server(work))
        reviews_routes = [r for r in route_ids(SHIPPED_ROUTES_FILE) if r.startswith("reviews.")]
        for route in reviews_routes:
            unleash.rollout(flag_key(route), 100)
        env = {**legacy_env(work, urls["shared"], SECRET), "REDIS_URL": "", "UNLEASH_URL": ""}
        legacy_port, reviews_port, gateway_port = free_port(), free_port(), free_port()
        legacy = Server(
            "legacy",
            [
                str(BIN / "gunicorn"),
                "legacy_django.config.wsgi:application",
                f"--bind=127.0.0.1:{legacy_port}",
                "--worker-class=gthread",
                "--workers=1",
                "--threads=8",
                "--no-control-socket",
            ],
            env,
            legacy_port,
            work / "legacy.log",
        )
        candidate = Server(
            "reviews",
            [sys.executable, "-m", "services.reviews"],
            {**env, "REVIEWS_URL": f"http://127.0.0.1:{reviews_port}"},
            reviews_port,
            work / "reviews.log",
        )
        for server in (legacy, candidate):
            exits.callback(server.stop)
            server.start()
        jwks = TcpProxy(("127.0.0.1", legacy_port))
        redis_silent = Blackhole(REDIS)
        redis_cut = TcpProxy(("127.0.0.1", redis_silent.port))
        for closable in (jwks, redis_cut, redis_silent):
            exits.callback(closable.close)
        # Every route off in the file: only Unleash's toggles send the reviews routes to their
        # candidate, so routing that lost them would show in the load (reads answered by legacy).
        flags = default_flags(route_ids(SHIPPED_ROUTES_FILE))
        var = work / "gateway"
        var.mkdir()
        (var / "flags.json").write_text(json.dumps(flags))
        gateway = Server(
            "gateway",
            [sys.executable, "-m", "gateway"],
            {
                **os.environ,
                "GATEWAY_PORT": str(gateway_port),
                "GATEWAY_WORKERS": "1",
                "GATEWAY_ACCESS_LOG": "false",
                "IDENTITY_SECRET": SECRET,
                "VAR_DIR": str(var),
                "FLAGS_FILE": str(var / "flags.json"),
                "LEGACY_URL": legacy.url,
                "REVIEWS_URL": candidate.url,
                "RECOMMENDATIONS_URL": f"http://127.0.0.1:{free_port()}",
                "JWT_JWKS_URL": f"http://127.0.0.1:{jwks.port}/.well-known/jwks.json",
                "GATEWAY_JWKS_REFRESH_SECONDS": "1",
                "REDIS_URL": f"redis://127.0.0.1:{redis_cut.port}/{REDIS_DB}",
                "UNLEASH_URL": unleash.url,
                "UNLEASH_API_TOKEN": unleash.backend_token,
                "UNLEASH_REFRESH_SECONDS": str(UNLEASH_REFRESH_SECONDS),
                "GATEWAY_ADMIN_TOKEN": ADMIN_TOKEN,
                "GATEWAY_HEADER_TIMEOUT": str(HEADER_TIMEOUT_SECONDS),
                "GATEWAY_BODY_TIMEOUT": str(BODY_TIMEOUT_SECONDS),
                "GATEWAY_MAX_CONNECTIONS": str(max_connections),
            },
            gateway_port,
            work / "gateway.log",
            health="/_gateway/ready",
        )
        exits.callback(gateway.stop)
        gateway.start()
        # Unleash publishes new toggles on its client API up to ~1 s late: wait for the gateway to have them.
        assert eventually(
            lambda: all(_routed_by_unleash(gateway.url, r, 100) for r in reviews_routes), timeout=30
        ), f"the gateway never routed by Unleash: {route_state(gateway.url, reviews_routes[0])}"
        tokens = [
            httpx.post(
                f"{gateway.url}/api/v1/auth/token", json={"username": u, "password": "demo-password"}
            ).json()["access_token"]
            for u in USERS
        ]
        database = Path(urls["shared"].removeprefix("sqlite:///"))
        with contextlib.closing(sqlite3.connect(database)) as db:
            option_ids = [row[0] for row in db.execute("SELECT id FROM items_itemoption WHERE stock > 0")]
        yield Stack(
            gateway.url,
            legacy,
            candidate,
            gateway,
            unleash,
            max_connections,
            jwks,
            redis_cut,
            redis_silent,
            database,
            tokens,
            option_ids,
        )


@dataclass(frozen=True)
class Sample:
    at: float
    kind: str  # candidate_read | legacy_read | write
    ok: bool  # not a 5xx, not a network error
    served_by: str
    order_id: int | None = None
    ms: float = 0.0  # how long the answer took


@dataclass
class Load:
    stack: Stack
    samples: list[Sample] = field(default_factory=list)
    keys_sent: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self, readers: int = 3, pause: float = 0.02) -> None:
        for index in range(readers):
            self._threads.append(threading.Thread(target=self._read, args=(index, pause), daemon=True))
        self._threads.append(threading.Thread(target=self._write, args=(pause * 3,), daemon=True))
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def _record(self, kind: str, send: Callable[[], httpx.Response]) -> httpx.Response | None:
        started = time.monotonic()
        try:
            response = send()
        except httpx.HTTPError:
            self.samples.append(Sample(time.monotonic(), kind, False, "none"))
            return None
        now = time.monotonic()
        served_by = response.headers.get("x-served-by", "")
        order_id = int(response.json()["id"]) if kind == "write" and response.status_code == 201 else None
        ok = response.status_code < 500
        self.samples.append(Sample(now, kind, ok, served_by, order_id, (now - started) * 1000))
        return response

    def _read(self, index: int, pause: float) -> None:
        rng = random.Random(index)
        with httpx.Client(base_url=self.stack.gateway, timeout=10) as client:
            while not self._stop.is_set():
                item = rng.randint(1, 40)
                kind, path = (
                    ("candidate_read", CANDIDATE_READ) if rng.random() < 0.5 else ("legacy_read", LEGACY_READ)
                )
                self._record(kind, lambda: client.get(path.format(item)))  # noqa: B023 - called at once
                time.sleep(pause)

    def _write(self, pause: float) -> None:
        rng = random.Random("writes")
        with httpx.Client(base_url=self.stack.gateway, timeout=20) as client:
            while not self._stop.is_set():
                self.keys_sent += 1
                headers = {
                    "Authorization": f"Bearer {rng.choice(self.stack.tokens)}",
                    "Idempotency-Key": f"reliability-{uuid.uuid4()}",  # one per purchase, every run its own
                }
                body = {"lines": [{"option_id": rng.choice(self.stack.option_ids), "quantity": 1}]}
                for _ in range(2):  # once more with the same key after a 5xx or a network error
                    response = self._record(
                        "write",
                        lambda: client.post("/api/v1/orders", json=body, headers=headers),  # noqa: B023
                    )
                    if response is not None and response.status_code < 500:
                        break
                    time.sleep(0.2)
                time.sleep(pause)


@dataclass(frozen=True)
class Result:
    scenario: str
    fault_seconds: float
    requests: int  # during the fault
    errors: int  # 5xx and network errors during the fault
    recovery_seconds: float  # from lifting the fault to the last error (or the candidate serving again)
    orders_201: int
    orders_lost: int  # answered 201, not in the database
    orders_duplicated: int  # orders beyond one per idempotency key
    after_errors: int  # errors from the end of recovery to the end of the run
    p99_ms: float  # of the answers (not errors) while the fault lasted
    rerouted: int  # candidate reads from the fault to the end of the run that the candidate did not answer
    flag_change_seconds: float | None  # a change made in Unleash after the fault, until the gateway had it

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0


@dataclass(frozen=True)
class Scenario:
    name: str
    what: str
    fault: Callable[[Stack], None]
    lift: Callable[[Stack], None]
    fault_seconds: float = 2.0
    # After lifting: the candidate must be serving again (its reads answered by it), not only no errors.
    candidate_back: bool = False
    # After recovering, under the same load: a measurement in seconds (Result.flag_change_seconds).
    after: Callable[[Stack], float] | None = None


SCENARIOS = (
    Scenario(
        "candidate killed",
        "reviews service SIGKILL, restarted after 2 s",
        lambda s: s.candidate.kill(),
        lambda s: s.candidate.start(),
        candidate_back=True,
    ),
    Scenario(
        "candidate hung",
        "reviews service SIGSTOP, SIGCONT after 6 s (longer than its 5 s read timeout)",
        lambda s: s.candidate.signal(signal.SIGSTOP),
        lambda s: s.candidate.signal(signal.SIGCONT),
        fault_seconds=6.0,
        candidate_back=True,
    ),
    Scenario(
        "legacy killed",
        "monolith SIGKILL (master and workers), restarted after 2 s",
        lambda s: s.legacy.kill(),
        lambda s: s.legacy.start(),
    ),
    Scenario(
        "Redis cut",
        "override store: connections refused and reset for 2 s",
        lambda s: s.redis_cut.cut(),
        lambda s: s.redis_cut.restore(),
    ),
    Scenario(
        "Redis blackholed",
        "override store: accepts, never answers, for 2 s",
        lambda s: s.redis_silent.silence(),
        lambda s: s.redis_silent.restore(),
    ),
    Scenario(
        "JWKS down",
        "the gateway's JWKS endpoint refused for 2 s (polled every 1 s; keys cached)",
        lambda s: s.jwks.cut(),
        lambda s: s.jwks.restore(),
    ),
    Scenario(
        "Unleash stopped",
        "flag source: the Unleash server stopped for 4 s (polled every 1 s; toggles stale after 3 s), "
        "then started again; then a rollout changed in Unleash",
        lambda s: s.unleash.stop(),
        lambda s: s.unleash.start(),
        fault_seconds=4.0,
        after=flag_change_seconds,
    ),
)


def _quiet(samples: list[Sample], since: float, window: float = 1.0) -> bool:
    now = time.monotonic()
    return now - since >= window and all(s.ok for s in samples[-400:] if s.at >= now - window)


def _orders(database: Path, after: int) -> tuple[set[int], int]:
    """Orders written after id ``after``, and how many distinct idempotency keys wrote them."""
    with contextlib.closing(sqlite3.connect(database, timeout=30)) as db:
        orders = {row[0] for row in db.execute("SELECT id FROM commerce_order WHERE id > ?", (after,))}
        keys = db.execute(
            "SELECT COUNT(DISTINCT key) FROM commerce_idempotentrequest WHERE order_id > ?", (after,)
        ).fetchone()[0]
    return orders, int(keys)


def run(stack: Stack, scenario: Scenario, settle_seconds: float = 1.0, max_recovery: float = 20.0) -> Result:
    with contextlib.closing(sqlite3.connect(stack.database, timeout=30)) as db:
        last_order = db.execute("SELECT COALESCE(MAX(id), 0) FROM commerce_order").fetchone()[0]
    load = Load(stack)
    load.start()
    try:
        time.sleep(0.5)  # a steady load before the fault
        fault_at = time.monotonic()
        scenario.fault(stack)
        time.sleep(scenario.fault_seconds)
        lifted_at = time.monotonic()  # a restart counts from when it begins: its boot is recovery time
        scenario.lift(stack)
        if scenario.candidate_back:
            eventually(
                lambda: any(s.at > lifted_at and s.served_by == "reviews" for s in load.samples[-50:]),
                timeout=max_recovery,
            )
        back_at = max([s.at for s in load.samples if s.served_by == "reviews"] or [lifted_at])
        # Recovered: a whole second without an error (a breaker that opened may take its 5 s to close).
        eventually(lambda: _quiet(load.samples, lifted_at), timeout=max_recovery)
        measured = scenario.after(stack) if scenario.after is not None else None
        time.sleep(settle_seconds)
    finally:
        load.stop()
    end = time.monotonic()
    during = [s for s in load.samples if fault_at <= s.at <= lifted_at]
    errors_after_lift = [s.at for s in load.samples if s.at > lifted_at and not s.ok]
    recovered_at = max([*errors_after_lift, lifted_at])
    if scenario.candidate_back:
        first_back = min(
            [s.at for s in load.samples if s.at > lifted_at and s.served_by == "reviews"] or [back_at]
        )
        recovered_at = max(recovered_at, first_back)
    orders, keys = _orders(stack.database, last_order)
    answered = {s.order_id for s in load.samples if s.order_id is not None}
    return Result(
        scenario=scenario.name,
        fault_seconds=round(lifted_at - fault_at, 2),
        requests=len(during),
        errors=sum(not s.ok for s in during),
        recovery_seconds=round(recovered_at - lifted_at, 2),
        orders_201=len(answered),
        orders_lost=len(answered - orders),
        orders_duplicated=len(orders) - keys,
        after_errors=sum(1 for at in errors_after_lift if at > recovered_at and at <= end),
        p99_ms=round(p99([s.ms for s in during if s.ok]), 1),
        rerouted=sum(
            1
            for s in load.samples
            if s.at >= fault_at and s.kind == "candidate_read" and s.served_by != "reviews"
        ),
        flag_change_seconds=None if measured is None else round(measured, 2),
    )


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] if ordered else 0.0


def table(results: list[Result]) -> str:
    """The README's Reliability table."""
    rows = [
        "| fault | what | requests during | error rate during | p99 answered during | candidate reads not "
        "answered by it | recovery | orders 201 | lost | written twice |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    what = {scenario.name: scenario.what for scenario in SCENARIOS}
    for r in results:
        recovery = f"{r.recovery_seconds:.1f} s"
        if r.flag_change_seconds is not None:
            recovery += f"; the change in Unleash reached the gateway in {r.flag_change_seconds:.1f} s"
        rows.append(
            f"| {r.scenario} | {what[r.scenario]} | {r.requests} | {r.error_rate:.1%} | {r.p99_ms:,.0f} ms "
            f"| {r.rerouted} | {recovery} | {r.orders_201} | {r.orders_lost} | {r.orders_duplicated} |"
        )
    return "\n".join(rows)
