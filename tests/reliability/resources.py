"""Resource bounds (ADR 0019, ADR 0011): 5,000 idle connections and 500 slow clients against the
reliability stack's gateway while the steady load of ``harness.Load`` goes on.

``attack(stack)`` measures the load's p99 for a few seconds, then opens the slow clients (half send a
request head one byte every half second and never finish it, half send a head and part of a body and
then nothing) and the idle connections (connect, send nothing). It samples the gateway's RSS and open
descriptors (every process of it) until the gateway has cut off every slow client, then closes
everything and times how long until a new client is served.

The gateway admits at most its connection cap (``GATEWAY_MAX_CONNECTIONS``, default 4,096 per worker
or half the open-file limit): a connection past it is answered 503 ``unavailable`` with ``Retry-After``
at once and closed. The idle connections past the cap get that, and are counted; the load's clients
keep their keep-alive connections and are served throughout.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx
import psutil

from tests.reliability.harness import (
    BODY_TIMEOUT_SECONDS,
    HEADER_TIMEOUT_SECONDS,
    Load,
    Sample,
    Stack,
    p99,
)
from tests.support.waiting import eventually

IDLE = 5_000
SLOW_HEADS = 250
SLOW_BODIES = 250
DRIP_SECONDS = 0.5  # a slow head's pace: one byte each
MiB = 1024 * 1024
SLOW_HEAD = b"GET /api/v1/items/1 HTTP/1.1\r\nHost: shop\r\nX-Slow: "
# An unfinished body on a route the gateway reads the body of before choosing a backend (optional auth).
SLOW_BODY = (
    b"POST /api/v1/items/1 HTTP/1.1\r\nHost: shop\r\nContent-Type: application/json\r\n"
    b'Content-Length: 64\r\n\r\n{"slow": '
)


@dataclass
class SlowClient:
    sock: socket.socket
    head: bool  # True: drips its head; False: stalls in its body
    clock_from: float  # when the gateway's timeout for it starts: its first head byte, its last body byte
    received: bytes = b""
    cut_at: float | None = None  # when the gateway closed it

    def step(self, now: float) -> None:
        """Read what the gateway sent; notice a close; else drip one more head byte."""
        if self.cut_at is not None:
            return
        try:
            while chunk := self.sock.recv(65536):
                self.received += chunk
            self.cut_at = now
        except BlockingIOError:
            if self.head:
                with contextlib.suppress(OSError):  # closed meanwhile: the next step sees it
                    self.sock.send(b"s")
        except OSError:  # reset
            self.cut_at = now
        if self.cut_at is not None:
            self.sock.close()

    @property
    def timed_out(self) -> bool:
        """Cut off with the gateway's 408 ``request_timeout`` envelope."""
        return self.received.startswith(b"HTTP/1.1 408 ") and b'"request_timeout"' in self.received


@dataclass
class SlowClients:
    clients: list[SlowClient] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def open(self, address: tuple[str, int], heads: int, bodies: int) -> None:
        for index in range(heads + bodies):
            sock = socket.create_connection(address, timeout=10)
            head = index < heads
            sock.sendall(SLOW_HEAD if head else SLOW_BODY)
            sock.setblocking(False)
            self.clients.append(SlowClient(sock, head, time.monotonic()))
        self._thread = threading.Thread(target=self._drip, daemon=True)
        self._thread.start()

    def _drip(self) -> None:
        while not self._stop.wait(DRIP_SECONDS):  # the pace of the attack, not a wait for state
            now = time.monotonic()
            for client in self.clients:
                client.step(now)

    def all_cut(self) -> bool:
        return all(client.cut_at is not None for client in self.clients)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        for client in self.clients:
            client.sock.close()

    def longest(self, head: bool) -> float:
        """The longest a slow client of this kind was held past the start of its timeout."""
        held = [c.cut_at - c.clock_from for c in self.clients if c.head == head and c.cut_at is not None]
        return max(held, default=0.0)


def usage(pid: int) -> tuple[float, int]:
    """RSS (MiB) and open descriptors of the process and its children, summed."""
    root = psutil.Process(pid)
    rss, fds = 0, 0
    for process in (root, *root.children(recursive=True)):
        with contextlib.suppress(psutil.NoSuchProcess):
            rss += process.memory_info().rss
            fds += process.num_fds()
    return rss / MiB, fds


@dataclass
class Sampler:
    """The gateway's highest RSS and descriptor count, sampled every 0.1 s while it runs."""

    pid: int
    rss_mb_max: float = 0.0
    fds_max: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def sample(self) -> None:
        rss, fds = usage(self.pid)
        self.rss_mb_max, self.fds_max = max(self.rss_mb_max, rss), max(self.fds_max, fds)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            self.sample()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.sample()


@dataclass(frozen=True)
class ResourceResult:
    cap: int  # the gateway's connection cap (one worker)
    idle: int
    idle_refused: int  # answered 503 unavailable at once (past the cap) and closed
    idle_other: int  # neither held nor refused with the 503: must be 0
    slow: int
    slow_timed_out: int  # cut off by the gateway with 408 request_timeout
    head_cut_seconds: float  # the longest a slow head was held from its first byte
    body_cut_seconds: float  # the longest a stalled body was held from its last byte
    rss_mb_before: float
    rss_mb_max: float
    fds_before: int
    fds_max: int
    requests: int  # the load's, from the first attacking connection until everything was closed
    errors: int  # 5xx and network errors among them
    p99_before_ms: float  # the load's, before the attack
    p99_during_ms: float
    served_again_seconds: float  # from closing the attack's connections until a new client is served


def _idle_state(sock: socket.socket) -> str:
    """held (open, nothing received), refused (the cap's 503 envelope), or other."""
    sock.setblocking(False)
    try:
        received = sock.recv(65536)
    except BlockingIOError:
        return "held"
    except OSError:
        return "other"
    refused = received.startswith(b"HTTP/1.1 503 ") and b'"unavailable"' in received
    return "refused" if refused and b"retry-after: 1" in received.lower() else "other"


def _served(url: str) -> bool:
    try:
        return httpx.get(f"{url}/_gateway/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _window(samples: list[Sample], start: float, end: float) -> list[Sample]:
    return [s for s in samples if start <= s.at <= end]


def attack(
    stack: Stack,
    idle: int = IDLE,
    heads: int = SLOW_HEADS,
    bodies: int = SLOW_BODIES,
    baseline_seconds: float = 3.0,
) -> ResourceResult:
    parts = urlsplit(stack.gateway)
    address = (str(parts.hostname), int(parts.port or 80))
    assert stack.gateway_server.process is not None
    pid = stack.gateway_server.process.pid
    rss_before, fds_before = usage(pid)
    load, sampler, slow = Load(stack), Sampler(pid), SlowClients()
    idle_socks: list[socket.socket] = []
    load.start()
    try:
        time.sleep(0.5 + baseline_seconds)  # a steady load, then its p99 before the attack
        attack_at = time.monotonic()
        sampler.start()
        slow.open(address, heads, bodies)
        idle_socks.extend(socket.create_connection(address, timeout=10) for _ in range(idle))
        eventually(slow.all_cut, timeout=max(HEADER_TIMEOUT_SECONDS, BODY_TIMEOUT_SECONDS) + 15)
        states = [_idle_state(sock) for sock in idle_socks]
        for sock in idle_socks:
            sock.close()
        slow.close()
        closed_at = time.monotonic()
        eventually(lambda: _served(stack.gateway), timeout=20)
        served_again = time.monotonic() - closed_at
    finally:
        load.stop()
        sampler.stop()
        slow.close()
        for sock in idle_socks:
            sock.close()
    before = _window(load.samples, attack_at - baseline_seconds, attack_at)
    during = _window(load.samples, attack_at, closed_at)
    return ResourceResult(
        cap=stack.max_connections,
        idle=idle,
        idle_refused=states.count("refused"),
        idle_other=states.count("other"),
        slow=len(slow.clients),
        slow_timed_out=sum(client.timed_out for client in slow.clients),
        head_cut_seconds=round(slow.longest(head=True), 2),
        body_cut_seconds=round(slow.longest(head=False), 2),
        rss_mb_before=round(rss_before, 1),
        rss_mb_max=round(sampler.rss_mb_max, 1),
        fds_before=fds_before,
        fds_max=sampler.fds_max,
        requests=len(during),
        errors=sum(not s.ok for s in during),
        p99_before_ms=round(p99([s.ms for s in before if s.ok]), 1),
        p99_during_ms=round(p99([s.ms for s in during if s.ok]), 1),
        served_again_seconds=round(served_again, 2),
    )


def table(result: ResourceResult) -> str:
    """The README's resource-bounds table."""
    r = result
    return "\n".join(
        [
            "| attack (one gateway worker, connection cap "
            f"{r.cap:,}) | gateway RSS | gateway open files | load during | load p99 before → during "
            "| cut off | new client served after |",
            "|---|---|---|---|---|---|---|",
            f"| {r.idle:,} idle connections ({r.idle_refused:,} past the cap: 503 at once) + {r.slow} slow "
            f"clients (half drip a head, half stall a body) | {r.rss_mb_before:.0f} → max "
            f"{r.rss_mb_max:.0f} MiB | {r.fds_before} → max {r.fds_max:,} | {r.requests:,} requests, "
            f"{r.errors} errors | {r.p99_before_ms:.0f} → {r.p99_during_ms:.0f} ms | {r.slow_timed_out} "
            f"of {r.slow} with 408 (heads ≤ {r.head_cut_seconds:.1f} s, bodies ≤ "
            f"{r.body_cut_seconds:.1f} s; timeouts {HEADER_TIMEOUT_SECONDS:.0f} s / "
            f"{BODY_TIMEOUT_SECONDS:.0f} s) | {r.served_again_seconds:.1f} s |",
        ]
    )
