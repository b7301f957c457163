"""The spike replay's figures: what each request got, per second and per phase, the recovery, the
write check, what legacy did after the routes moved, the chart and the summary table.

Pure functions over the replay's records (``Outcome`` per request, the probe's samples and legacy
lines), so the harness tests can check them without running a stack.
"""

from __future__ import annotations

import bisect
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from bench._replay_probe import INTERVAL, LegacyLine, Sample

P99_BOUND_MS = 500.0
ERROR_BOUND = 0.001
RECOVERY_HOLD_S = 3
RECOVERY_STEP_S = 0.1
# Outcome classes, in the order the chart stacks them.
CLASSES = ("ok", "shed", "unavailable", "timeout", "other")
CLASS_LABELS = {
    "ok": "answered (2xx/4xx)",
    "shed": "503 overloaded (shed)",
    "unavailable": "other 503",
    "timeout": "client timeout",
    "other": "other error",
}


class Outcome(NamedTuple):
    sent: float  # seconds since the load started
    ms: float  # latency the client saw
    status: int  # 0: no answer (client timeout or a connection error)
    kind: str  # list | summary | home | detail | create
    served_by: str = ""  # X-Served-By: legacy | reviews | recommendations ("": no answer)
    code: str = ""  # a 5xx envelope's error code; client_timeout or the client error for no answer
    request_id: str = ""
    write_id: str = ""  # a create's marker in the review body
    retry_after: str = ""  # the Retry-After header, if any


def classify(outcome: Outcome) -> str:
    """ok (answered: 2xx/4xx) | shed (503 overloaded) | unavailable (any other 503, e.g. legacy's
    deadline_exceeded or an open circuit) | timeout (the client gave up at 2 s) | other."""
    if outcome.status == 0:
        return "timeout" if outcome.code == "client_timeout" else "other"
    if outcome.status < 500:
        return "ok"
    if outcome.status == 503:
        return "shed" if outcome.code == "overloaded" else "unavailable"
    return "other"


def _p99(values: Sequence[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] if ordered else 0.0


def _between(results: Sequence[Outcome], start: float, end: float) -> list[Outcome]:
    return [o for o in results if start <= o.sent < end]


def window(results: Sequence[Outcome], start: float, end: float) -> dict[str, Any]:
    """Requests sent in [start, end): error rate, errors by class, how fast the 503s were, and the
    p99 of the requests that were answered (admitted: 2xx/4xx)."""
    chosen = _between(results, start, end)
    classes = Counter(classify(o) for o in chosen)
    errors = len(chosen) - classes["ok"]
    return {
        "from_s": round(start, 2),
        "to_s": round(end, 2),
        "requests": len(chosen),
        "errors": errors,
        "error_rate": errors / len(chosen) if chosen else 0.0,
        **{name: classes[name] for name in CLASSES if name != "ok"},
        "p99_503_ms": _p99([o.ms for o in chosen if o.status == 503]),
        "p99_admitted_ms": _p99([o.ms for o in chosen if classify(o) == "ok"]),
    }


def per_second(results: Sequence[Outcome], seconds: int) -> list[dict[str, float]]:
    rows = []
    for second in range(seconds):
        chosen = _between(results, second, second + 1)
        classes = Counter(classify(o) for o in chosen)
        served = Counter(o.served_by for o in chosen if classify(o) == "ok")
        errors = len(chosen) - classes["ok"]
        rows.append(
            {
                "second": second,
                "requests": len(chosen),
                "errors": errors,
                "no_answer": sum(1 for o in chosen if o.status == 0),
                "error_rate": errors / len(chosen) if chosen else 0.0,
                "p99_ms": _p99([o.ms for o in chosen]),
                "p99_admitted_ms": _p99([o.ms for o in chosen if classify(o) == "ok"]),
                "ok_legacy": served["legacy"],
                "ok_candidate": sum(served.values()) - served["legacy"],
                **{name: classes[name] for name in CLASSES if name != "ok"},
            }
        )
    return rows


def recovery(results: Sequence[Outcome], since: float, until: float) -> float | None:
    """Seconds from ``since`` to the first moment t (in 0.1 s steps) from which each of the next
    three 1 s windows has an error rate < 0.1 % and a p99 < 500 ms; None if none before ``until``.

    The definition of the first replays, on a finer grid: with whole-second buckets a recovery
    could only be told to ±1 s, too coarse for a 1 s target.
    """
    ordered = sorted(results, key=lambda o: o.sent)
    sent = [o.sent for o in ordered]

    def healthy(start: float) -> bool:
        chosen = ordered[bisect.bisect_left(sent, start) : bisect.bisect_left(sent, start + 1)]
        if not chosen:
            return False
        errors = sum(1 for o in chosen if classify(o) != "ok")
        return errors / len(chosen) < ERROR_BOUND and _p99([o.ms for o in chosen]) < P99_BOUND_MS

    steps = int((until - since - RECOVERY_HOLD_S) / RECOVERY_STEP_S) + 1
    for step in range(max(0, steps)):
        start = since + step * RECOVERY_STEP_S
        if all(healthy(start + k) for k in range(RECOVERY_HOLD_S)):
            return round(start - since, 1)
    return None


def unsteady_seconds(mode: Mapping[str, Any]) -> int | None:
    """Whole seconds from the move to the end of the spike that miss the recovery bounds (error
    rate < 0.1 %, p99 < 500 ms): a recovery that does not hold (flapping, a starved service) shows
    here. None when the routes never moved."""
    at = mode["event"]["in_store_at_s"]
    if at is None:
        return None
    return sum(
        1
        for row in mode["per_second"]
        if math.ceil(at) <= row["second"] < mode["spike"]["to_s"]
        and (row["error_rate"] >= ERROR_BOUND or row["p99_ms"] >= P99_BOUND_MS)
    )


def autopilot_rounds(moves: Sequence[Mapping[str, Any]]) -> dict[str, list[float]]:
    """When the autopilot moved routes to their services and when back, one time per round (a
    round's moves land within a second of each other)."""
    rounds: dict[str, list[float]] = {"to_candidate": [], "back": []}
    for move in moves:
        if move["actor"] != "autopilot":
            continue
        times = rounds["to_candidate" if move["to"] == "candidate" else "back"]
        if not times or move["t"] - times[-1] > 1.0:
            times.append(move["t"])
    return rounds


def writes(results: Sequence[Outcome], stored: Sequence[str]) -> dict[str, int]:
    """The creates against the reviews in the database carrying this mode's marker (``stored``:
    the write id of each row). Every 201 must be there once; a shed create never reached a
    backend, so it must not be there; a create that timed out may or may not be."""
    creates = [o for o in results if o.kind == "create"]
    acknowledged = {o.write_id for o in creates if o.status == 201}
    shed = {o.write_id for o in creates if classify(o) == "shed"}
    counts = Counter(stored)
    return {
        "attempted": len(creates),
        "acknowledged_201": len(acknowledged),
        "client_timeouts": sum(1 for o in creates if o.status == 0),
        "in_database": len(stored),
        "duplicates": sum(count - 1 for count in counts.values()),
        "acknowledged_missing": len(acknowledged - set(counts)),
        "written_unacknowledged": len(set(counts) - acknowledged),
        "shed_but_written": len(shed & set(counts)),
    }


def writes_ok(check: Mapping[str, int]) -> bool:
    return check["duplicates"] == 0 and check["acknowledged_missing"] == 0 and check["shed_but_written"] == 0


def probe_rows(samples: Sequence[Sample]) -> list[dict[str, float]]:
    """The probe's samples as flat rows (the JSON, the chart and ``after_event`` read these):
    ``cpu_<part>``, ``<backend>_<socket figure>`` and the gateway's figures."""
    rows = []
    for sample in samples:
        row: dict[str, float] = {"t": round(sample.t, 2)}
        row.update({f"cpu_{part.replace(' ', '_')}": round(cores, 2) for part, cores in sample.cpu.items()})
        for backend, counts in sample.sockets.items():
            row.update({f"{backend}_{name}": value for name, value in counts.items()})
        row.update(sample.gateway)
        rows.append(row)
    return rows


_CPU_PARTS = ("legacy", "gateway", "services", "postgres", "load_generator", "outside_the_stack", "machine")
# Cumulative counters from the gateway: reported as the increase within each second.
_COUNTERS = ("shed_total", "fallbacks_total", "circuit_open_total", "candidate_errors_total")


def after_event(
    results: Sequence[Outcome],
    probe: Sequence[Mapping[str, float]],
    legacy: Sequence[LegacyLine],
    at: float,
    seconds: int = 6,
) -> dict[str, Any]:
    """The seconds after the routes moved (``at``): what the clients got, where the CPU went, what
    waited in the backends' sockets, what the gateway did (sheds, fallbacks to legacy, decisions
    sent back by an open breaker), and what legacy kept doing and for whom."""
    by_id = {o.request_id: o for o in results}
    rows = []
    for second in range(seconds):
        start, end = at + second, at + second + 1
        near = [p for p in probe if start <= p["t"] < end]
        done = [
            line
            for line in legacy
            if start + INTERVAL <= line.t < end + INTERVAL and line.request_id in by_id
        ]
        chosen = _between(results, start, end)
        row: dict[str, Any] = {"second": second}
        row.update({f"cpu_{part}": _mean([p.get(f"cpu_{part}", 0.0) for p in near]) for part in _CPU_PARTS})
        for key in (
            "legacy_unread",
            "legacy_abandoned_unread",
            "legacy_backlog",
            "reviews_unread",
            "recommendations_unread",
        ):
            row[f"{key}_max"] = max((p.get(key, 0) for p in near), default=0)
        for key in _COUNTERS:
            row[f"{key[: -len('_total')]}_per_s"] = _increase(probe, key, start, end)
        row["candidate_breaker_max"] = max((p.get("candidate_breaker", 0) for p in near), default=0)
        row["legacy_limit"] = near[-1].get("limit") if near else None
        row.update(
            {
                "legacy_finished": len(done),
                "legacy_finished_503": sum(1 for line in done if line.status == 503),
                "error_rate": window(results, start, end)["error_rate"],
                "p99_ms": _p99([o.ms for o in chosen]),
                "served_legacy": sum(1 for o in chosen if o.served_by == "legacy"),
                "served_candidate": sum(1 for o in chosen if o.served_by not in ("", "legacy")),
            }
        )
        rows.append(row)
    later = [line for line in legacy if line.t >= at + INTERVAL]
    work = legacy_work(results, later)
    return {
        "per_second": rows,
        "legacy_finished_after": work["finished"],
        "legacy_full_work_after": work["full_work"],
        "legacy_busy_s_after": work["busy_s"],
        "legacy_sent_before_event": sum(
            1 for line in later if line.request_id in by_id and by_id[line.request_id].sent < at
        ),
        "legacy_answered_elsewhere": work["shadow_copies"],
        "legacy_client_already_gone": work["for_clients_gone"],
        "legacy_last_finish_s": round(
            max((line.t for line in later if line.request_id in by_id), default=at) - at, 2
        ),
    }


def legacy_work(results: Sequence[Outcome], legacy: Sequence[LegacyLine]) -> dict[str, float]:
    """What legacy executed of our requests (its access log joined to the clients' records by request
    id; the gateway's own JWKS polls carry none of ours): how many, how many it refused for a
    passed deadline (503), how long it was busy, how many were shadow copies (the client had its
    answer from a service) and how many it finished after their client had given up."""
    by_id = {o.request_id: o for o in results}
    ours = [(line, by_id[line.request_id]) for line in legacy if line.request_id in by_id]
    return {
        "finished": len(ours),
        "full_work": sum(1 for line, _ in ours if line.status != 503),
        "deadline_503": sum(1 for line, _ in ours if line.status == 503),
        "busy_s": round(sum(line.ms for line, _ in ours) / 1000, 2),
        "shadow_copies": sum(1 for _, o in ours if o.served_by not in ("", "legacy")),
        "for_clients_gone": sum(
            1 for line, o in ours if o.status == 0 and o.sent + o.ms / 1000 < line.t - INTERVAL
        ),
    }


def _increase(probe: Sequence[Mapping[str, float]], key: str, start: float, end: float) -> float:
    """How much a cumulative counter grew between the last samples before ``start`` and ``end``."""
    before = [p[key] for p in probe if p["t"] < start and key in p]
    until = [p[key] for p in probe if p["t"] < end and key in p]
    return round(until[-1] - before[-1], 1) if before and until else 0.0


def _mean(values: Sequence[float]) -> float:
    return round(sum(values) / len(values), 2) if values else 0.0


def markdown(modes: Sequence[Mapping[str, Any]]) -> str:
    """The three-mode table (summary.md, README)."""
    lines = [
        "| mode | spike: error rate | before the move: error rate | 503s (p99 ms) | client timeouts "
        "| other errors | p99 admitted | recovery after the move (seconds of the spike still missing it) "
        "| writes |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for mode in modes:
        if "skipped" in mode:
            lines.append(f"| {mode['key']}: {mode['title']} | not run: {mode['skipped']} |" + " |" * 7)
            continue
        before, spike, check = mode["before"], mode["spike"], mode["writes"]
        recovered = mode["recovery_s"]
        lines.append(
            f"| {mode['key']}: {mode['title']} | {spike['error_rate'] * 100:.1f} % "
            f"| {before['error_rate'] * 100:.1f} % "
            f"| {before['shed'] + before['unavailable']} ({before['p99_503_ms']:.0f}) "
            f"| {before['timeout']} | {before['other']} | {before['p99_admitted_ms']:.0f} ms "
            f"| {f'{recovered:.1f} s' if recovered is not None else 'none in the run'}"
            f"{f' ({unsteady_seconds(mode)} s)' if mode['event']['in_store_at_s'] is not None else ''} "
            f"| {check['acknowledged_201']} × 201, {check['in_database']} stored, "
            f"{check['duplicates']} duplicates, {check['acknowledged_missing']} missing |"
        )
    return "\n".join(lines)


def after_text(mode: Mapping[str, Any]) -> str:
    """What happened after the move, in a few lines (the console output)."""
    if "skipped" in mode:
        return f"[{mode['key']}] not run: {mode['skipped']}"
    event, after = mode["event"], mode["after_event"]
    head = f"[{mode['key']}] {mode['title']}: load average at start {mode['load_average_at_start'][0]:.2f}; "
    if after is None:
        return head + "the routes never moved"
    lines = [
        head
        + (
            f"flip-all run at {event['command_at_s']:.1f} s, in the store at {event['in_store_at_s']:.1f} s; "
            if event["kind"] == "flip-all"
            else f"autopilot's first move in the store at {event['in_store_at_s']:.1f} s; "
        )
        + f"the first request a service answered was sent at {event['first_candidate_answer_sent_at_s']} s; "
        + "recovery "
        + (f"{mode['recovery_s']:.1f} s" if mode["recovery_s"] is not None else "none in the run"),
        f"    legacy after the move: finished {after['legacy_finished_after']} requests "
        f"({after['legacy_full_work_after']} with full work, "
        f"{after['legacy_sent_before_event']} sent before the move, {after['legacy_answered_elsewhere']} "
        f"answered by a service (shadow copies), {after['legacy_client_already_gone']} whose client had "
        "already given up), busy "
        f"{after['legacy_busy_s_after']} s, last one {after['legacy_last_finish_s']} s after the move",
    ]
    rows = after["per_second"]
    for label, key in (
        ("CPU legacy", "cpu_legacy"),
        ("CPU services", "cpu_services"),
        ("CPU outside stack", "cpu_outside_the_stack"),
        ("CPU machine", "cpu_machine"),
        ("unread in legacy", "legacy_unread_max"),
        ("unread in reviews", "reviews_unread_max"),
        ("legacy finished", "legacy_finished"),
        ("shed / s", "shed_per_s"),
        ("fallbacks / s", "fallbacks_per_s"),
        ("circuit_open / s", "circuit_open_per_s"),
        ("error rate %", "error_rate"),
        ("p99 ms", "p99_ms"),
    ):
        scale = 100 if key == "error_rate" else 1
        lines.append(f"    {label:<20} " + " ".join(f"{(row[key] or 0) * scale:7.1f}" for row in rows))
    return "\n".join(lines)


_COLORS = {
    "ok_legacy": ("tab:blue", "answered by legacy"),
    "ok_candidate": ("tab:green", "answered by a service"),
    "shed": ("tab:orange", CLASS_LABELS["shed"]),
    "unavailable": ("gold", CLASS_LABELS["unavailable"]),
    "timeout": ("tab:red", CLASS_LABELS["timeout"]),
    "other": ("tab:purple", CLASS_LABELS["other"]),
}


def chart(modes: Sequence[Mapping[str, Any]], timeline: Any, path: Path) -> None:
    """One row per mode: requests/s by outcome; p99 of admitted requests; legacy inside."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ran = [mode for mode in modes if "skipped" not in mode]
    if not ran:
        return
    figure, axes = plt.subplots(len(ran), 3, figsize=(17, 3.6 * len(ran)), sharex=True, squeeze=False)
    for index, mode in enumerate(ran):
        row = axes[index]
        rows = mode["per_second"]
        seconds = [r["second"] for r in rows]
        bottom = [0.0] * len(rows)
        for key, (color, label) in _COLORS.items():
            values = [r[key] for r in rows]
            row[0].bar(seconds, values, bottom=bottom, width=1.0, align="edge", color=color, label=label)
            bottom = [b + v for b, v in zip(bottom, values, strict=True)]
        row[0].set_ylabel(f"{mode['key']}: requests / s")
        row[0].set_title(f"{mode['key']}: {mode['title']}", fontsize=10, loc="left")
        row[1].plot(
            seconds, [max(r["p99_admitted_ms"], 1) for r in rows], color="tab:blue", label="p99 answered"
        )
        row[1].plot(seconds, [max(r["p99_ms"], 1) for r in rows], color="tab:red", alpha=0.5, label="p99 all")
        row[1].axhline(P99_BOUND_MS, color="grey", linestyle=":", label=f"{P99_BOUND_MS:.0f} ms")
        row[1].set_yscale("log")
        row[1].set_ylabel("ms")
        recovered = mode["recovery_s"]
        row[1].set_title(
            f"spike errors {mode['spike']['error_rate'] * 100:.1f} %, recovery "
            + (f"{recovered:.1f} s" if recovered is not None else "none"),
            fontsize=10,
            loc="left",
        )
        probe = mode["probe"]
        times = [p["t"] for p in probe]
        row[2].plot(
            times, [p.get("cpu_legacy", 0) for p in probe], color="tab:blue", label="legacy CPU (cores)"
        )
        row[2].plot(
            times, [p.get("cpu_machine", 0) for p in probe], color="black", alpha=0.4, label="machine CPU"
        )
        row[2].set_ylabel("cores")
        twin = row[2].twinx()
        twin.plot(
            times,
            [p.get("legacy_unread", 0) for p in probe],
            color="tab:red",
            label="requests unread in legacy",
        )
        if any("limit" in p for p in probe):
            twin.plot(
                times, [p.get("limit", 0) for p in probe], color="tab:orange", label="limit (sum of workers)"
            )
            twin.plot(
                times, [p.get("in_flight", 0) for p in probe], color="tab:green", label="admitted in flight"
            )
        twin.set_ylabel("requests")
        for axis in row:
            axis.axvspan(timeline.calm_s, timeline.spike_end_s, color="grey", alpha=0.07)
            for move in mode["moves"]:
                color = (
                    "black"
                    if move["actor"] != "autopilot"
                    else ("tab:green" if move["to"] == "candidate" else "tab:gray")
                )
                axis.axvline(move["t"], color=color, linestyle="--", linewidth=0.8)
        row[2].set_ylim(0, 2.2)
        if index == 0:
            row[0].legend(loc="upper left", fontsize=7)
            row[1].legend(loc="upper left", fontsize=7)
            handles = row[2].get_legend_handles_labels()
            more = twin.get_legend_handles_labels()
            row[2].legend(handles[0] + more[0], handles[1] + more[1], loc="upper left", fontsize=7)
    for axis in axes[-1]:
        axis.set_xlabel("seconds")
    figure.suptitle(
        "8 pm spike replay, same load in each mode. Grey: the spike; dashed: flip-all (black), "
        "autopilot moves (green: to the service, grey: back)",
        fontsize=11,
    )
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
