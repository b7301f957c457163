"""What happens inside the stack while the spike replay runs: sampled every 0.25 s from outside.

The replay's clients say *what* they got; this says *why*. A thread beside the load samples:

* CPU per part of the stack, in cores (1.0 = one core busy): legacy (gunicorn and its worker),
  the gateway, the two services, PostgreSQL (every backend process, whatever database), the load
  generator (this process), the whole machine, and what is left: processes outside the stack (the
  machine is shared);
* each backend's sockets from ``/proc/net/tcp``: connections open, connections whose request bytes
  the backend has not read yet (requests waiting for a thread or the event loop), those among them
  the gateway has already closed (``CLOSE_WAIT``: work whose answer nobody will read), and the
  accept backlog;
* every second sample, the gateway's ``/_gateway/metrics`` (summed over workers): legacy's adaptive
  limit (``gateway_concurrency_limit``, ``_in_flight``, ``_queued``; absent when the limiter is off)
  and what it shed, fallbacks to legacy, decisions sent to legacy because a candidate's breaker was
  open, upstream errors per side, the candidates' breaker state and the shadow results;
* legacy's access log (gunicorn ``--access-logfile``, one ``request-id status µs`` line per request
  it finished), read as it grows: which requests legacy executed, when, and for how long.
"""

from __future__ import annotations

import re
import threading
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import psutil

INTERVAL = 0.25
# gunicorn's access log format for the replay: the request id the load generator set, the status
# and the time legacy spent on the request (µs), so each line joins the client's record.
LEGACY_LOG_FORMAT = "%({x-request-id}i)s %(s)s %(D)s"
_GAUGES = {
    "gateway_concurrency_limit": "limit",
    "gateway_concurrency_in_flight": "in_flight",
    "gateway_concurrency_queued": "queued",
}
_SAMPLE = re.compile(r"^([a-z_]+)\{([^}]*)\}\s+([0-9.eE+-]+)$")
_LABEL = re.compile(r'([a-z_]+)="([^"]*)"')
# /proc/net/tcp socket states (include/net/tcp_states.h)
_ESTABLISHED, _CLOSE_WAIT, _LISTEN = "01", "08", "0A"


@dataclass(frozen=True, kw_only=True, slots=True)
class Sample:
    t: float  # seconds since the load started
    cpu: Mapping[str, float]  # cores per part of the stack, "machine" and "outside the stack"
    sockets: Mapping[str, Mapping[str, int]]  # backend -> open, unread, abandoned_unread, backlog
    gateway: Mapping[str, float]  # parse_gateway's figures (cumulative counters, current gauges)


@dataclass(frozen=True, kw_only=True, slots=True)
class LegacyLine:
    t: float  # when the line was read (≤ INTERVAL after legacy finished the request)
    request_id: str
    status: int
    ms: float  # time legacy spent on it


def parse_gateway(exposition: str, legacy: str = "legacy") -> dict[str, float]:
    """The figures the probe follows, from one scrape: legacy's limiter gauges (only when it has a
    limiter) and counters, summed over routes: ``shed_total`` (legacy), ``fallbacks_total``,
    ``circuit_open_total`` (decisions sent to legacy by an open candidate breaker),
    ``legacy_errors_total`` / ``candidate_errors_total`` (upstream errors), ``shadow_<result>_total``;
    and ``candidate_breaker``, the worst candidate breaker (0 closed, 1 half-open, 2 open)."""
    figures: dict[str, float] = {
        "shed_total": 0.0,
        "fallbacks_total": 0.0,
        "circuit_open_total": 0.0,
        "legacy_errors_total": 0.0,
        "candidate_errors_total": 0.0,
        "candidate_breaker": 0.0,
    }
    for line in exposition.splitlines():
        match = _SAMPLE.match(line)
        if not match:
            continue
        name, labels, value = match.group(1), dict(_LABEL.findall(match.group(2))), float(match.group(3))
        ours = labels.get("cluster") == legacy
        if name in _GAUGES and ours:
            figures[_GAUGES[name]] = value
        elif name == "gateway_shed_total" and ours:
            figures["shed_total"] += value
        elif name == "gateway_fallbacks_total":
            figures["fallbacks_total"] += value
        elif name == "gateway_flag_decisions_total" and labels.get("reason") == "circuit_open":
            figures["circuit_open_total"] += value
        elif name == "gateway_upstream_errors_total":
            figures["legacy_errors_total" if ours else "candidate_errors_total"] += value
        elif name == "gateway_breaker_state" and not ours:
            figures["candidate_breaker"] = max(figures["candidate_breaker"], value)
        elif name == "gateway_shadow_total":
            key = f"shadow_{labels.get('result', 'unknown')}_total"
            figures[key] = figures.get(key, 0.0) + value
    return figures


def parse_sockets(table: str, port: int) -> dict[str, int]:
    """A server's side of its TCP connections on ``port``, from ``/proc/net/tcp``'s text."""
    counts = {"open": 0, "unread": 0, "abandoned_unread": 0, "backlog": 0}
    suffix = f":{port:04X}"
    for line in table.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 5 or not fields[1].endswith(suffix):
            continue
        state, unread = fields[3], int(fields[4].split(":")[1], 16)
        if state == _LISTEN:
            counts["backlog"] += unread  # a listening socket's rx queue: connections not accepted yet
        elif state in (_ESTABLISHED, _CLOSE_WAIT):
            counts["open"] += 1
            if unread:
                counts["unread"] += 1
                counts["abandoned_unread"] += state == _CLOSE_WAIT
    return counts


def parse_legacy_line(line: str, t: float) -> LegacyLine | None:
    parts = line.split()
    if len(parts) != 3 or not parts[1].isdigit() or not parts[2].isdigit():
        return None
    return LegacyLine(t=t, request_id=parts[0], status=int(parts[1]), ms=int(parts[2]) / 1000)


def _tree_seconds(root: psutil.Process) -> float:
    total = 0.0
    try:
        processes = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0.0
    for process in processes:
        try:
            times = process.cpu_times()
        except psutil.Error:
            continue  # it ended between the listing and the read
        total += times.user + times.system
    return total


def _postgres_seconds() -> float:
    total = 0.0
    for process in psutil.process_iter(["name", "cpu_times"]):
        times = process.info.get("cpu_times")
        if process.info.get("name") == "postgres" and times is not None:
            total += times.user + times.system
    return total


class Probe:
    """Samples in a thread from ``start()`` to ``stop()``; then read ``samples`` and ``legacy_lines``."""

    def __init__(
        self,
        *,
        start_at: float,
        pids: Mapping[str, int],
        ports: Mapping[str, int],
        metrics_url: str,
        legacy_log: Path,
    ) -> None:
        self.start_at = start_at  # time.monotonic() at which the load starts (t = 0)
        self.pids = pids  # part of the stack -> root pid: legacy, gateway, reviews, recommendations
        self.ports = ports  # backend -> port whose sockets are followed
        self.metrics_url = metrics_url
        self.legacy_log = legacy_log
        self.samples: list[Sample] = []
        self.legacy_lines: list[LegacyLine] = []
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self.run, name="replay-probe", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=5)

    def run(self) -> None:
        roots = {name: psutil.Process(pid) for name, pid in self.pids.items()}
        generator = psutil.Process()  # this process alone: the servers are its children
        previous = self._cpu_seconds(roots, generator)
        psutil.cpu_percent(None)
        last = time.monotonic()
        offset, tick = 0, 0
        gateway: Mapping[str, float] = {}
        while not self._stopping.wait(INTERVAL):
            now = time.monotonic()
            seconds = self._cpu_seconds(roots, generator)
            cores = {name: max(0.0, (seconds[name] - previous[name]) / (now - last)) for name in seconds}
            cpu = {
                "legacy": cores["legacy"],
                "gateway": cores["gateway"],
                "services": cores["reviews"] + cores["recommendations"],
                "postgres": cores["postgres"],
                "load generator": cores["load generator"],
            }
            machine = psutil.cpu_percent(None) / 100 * (psutil.cpu_count() or 1)
            cpu = {**cpu, "machine": machine, "outside the stack": max(0.0, machine - sum(cpu.values()))}
            previous, last = seconds, now
            offset = self._read_log(offset, now - self.start_at)
            if tick % 2 == 0:  # a scrape costs the gateway a few ms: every other sample is enough
                gateway = self._scrape() or gateway
            self.samples.append(
                Sample(t=now - self.start_at, cpu=cpu, sockets=self._sockets(), gateway=gateway)
            )
            tick += 1
        self._read_log(offset, time.monotonic() - self.start_at)

    @staticmethod
    def _cpu_seconds(roots: Mapping[str, psutil.Process], generator: psutil.Process) -> dict[str, float]:
        own = generator.cpu_times()
        return {
            **{name: _tree_seconds(root) for name, root in roots.items()},
            "postgres": _postgres_seconds(),
            "load generator": own.user + own.system,
        }

    def _sockets(self) -> dict[str, dict[str, int]]:
        try:
            table = Path("/proc/net/tcp").read_text()
        except OSError:
            return {}
        return {name: parse_sockets(table, port) for name, port in self.ports.items()}

    def _scrape(self) -> dict[str, float] | None:
        try:
            with urllib.request.urlopen(self.metrics_url, timeout=1) as response:  # noqa: S310 - our own URL
                return parse_gateway(response.read().decode())
        except OSError:
            return None

    def _read_log(self, offset: int, t: float) -> int:
        try:
            with self.legacy_log.open("rb") as log:
                log.seek(offset)
                chunk = log.read()
        except OSError:
            return offset
        complete = chunk[: chunk.rfind(b"\n") + 1]
        for line in complete.decode(errors="replace").splitlines():
            parsed = parse_legacy_line(line, t)
            if parsed is not None:
                self.legacy_lines.append(parsed)
        return offset + len(complete)
