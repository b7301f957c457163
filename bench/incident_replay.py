"""Replay the 8 pm push spike three times, one mode each, and compare what clients got.

    .venv/bin/python bench/incident_replay.py [--quick] [--modes abc] [--spike RPS]

Modes, each on a fresh stack (same seeded database; Redis database 14 cleared in between):
  a  no protection: the route table with legacy's adaptive limit off; at a fixed second a human
     runs `flagctl flip-all --to candidate` (the baseline of the first replays);
  b  protection: the shipped route table (legacy's limit on); the same human flip;
  c  protection + auto-offload: `[autopilot] enabled = true` with a short shed window, shadow
     sampling and `auto_offload = true` on the replayed routes from the first second (so parity
     evidence gathers before the spike); nobody flips.

--quick: 42 s of load per mode, all three in about 2.5 minutes; without it 75 s per mode (about 4.5
minutes). The spike is 320 req/s (--spike; why that rate: bench/_replay_load.py).

Stack per mode: PostgreSQL (BENCH_DATABASE_URL, default shop_bench: created if missing, migrated,
seeded large), the monolith with a fixed small capacity (gunicorn, 1 worker x 2 threads), both
services (1 uvicorn worker each), the gateway (2 workers), overrides in Redis (database 14; the
tests use 15). Open-loop load from 20 signed-in users: 60 % reviews.list, 15 % reviews.summary,
15 % recommendations.home, 5 % reviews.detail, 5 % POST reviews.create; calm (40 req/s), a ramp to
the spike, the spike held, calm again; client timeout 2 s, no retries. Creates go to items
301-500 and reads to items 1-300, so a write landing between a read and its shadow copy cannot
make a false parity mismatch (mode c decides on parity). The reviews a mode wrote are checked,
then deleted with their share of the item counters (a user reviews an item once: left in place,
they would turn later creates into 409s).

Reported per mode: error rate during the spike and before the routes moved (the flip, or the
autopilot's first move), those errors split into 503s (with the p99 of their latency), client
timeouts and other errors; the p99 of admitted (2xx/4xx) requests; the time to recovery (every
1 s window of the next 3 s has error rate < 0.1 % and p99 < 500 ms, on a 0.1 s grid) counted from
when the move is in the override store (flagctl's own start-up is reported apart), and how many
seconds of the spike after the move still miss those bounds (a recovery that does not hold); the
write check (no duplicates, every 201 in the database, no shed create written); what legacy kept doing
after the move (bench/_replay_probe.py). Writes bench/results/incident_replay.json and
incident_replay.png; with --screenshots also the ops console at the end of each mode
(console-<mode>.png, Chromium via Playwright). Needs aiohttp and matplotlib (`make bench-tools`),
Redis and PostgreSQL.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import tomllib
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import psycopg
import redis

from bench import _replay_load as load
from bench import _replay_report as report
from bench._console_shot import console_screenshot
from bench._replay_probe import LEGACY_LOG_FORMAT, Probe
from bench._support import (
    PG_BENCH_URL,
    RESULTS,
    Needs,
    free_port,
    legacy_command,
    prepare_database,
    require,
    server_process,
    write_result,
)

NEEDS = Needs(modules=("aiohttp", "matplotlib"), redis=True, postgres=True)
REDIS_URL = "redis://127.0.0.1:6379/14"
SHIPPED_TABLE = ROOT / "gateway" / "routes.toml"
VAR = ROOT / "var" / "bench"
# The reads the load replays: mode c samples them for parity and marks them for auto-offload. The
# replay's writes (reviews.create) have no shadow, hence no parity evidence: they stay on legacy.
HOT_READS = ("reviews.list", "reviews.summary", "reviews.detail", "recommendations.home")
SHADOW_RATE = 0.25


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class Mode:
    key: str
    title: str
    human_flip: bool


MODES = (
    Mode(key="a", title="no protection, human flip", human_flip=True),
    Mode(key="b", title="protection, human flip", human_flip=True),
    Mode(key="c", title="protection + auto-offload, no human", human_flip=False),
)


def autopilot_settings(timeline: load.Timeline) -> dict[str, Any]:
    """Mode c's `[autopilot]`: act once legacy has shed in 2 of the last 3 s, on routes with ≥ 99.9 %
    parity over ≥ 30 shadow comparisons (the calm phase and the ramp gather that many on the busy
    routes); a cool-down (6 s quick, 10 s full) short enough that the move back after the spike
    falls inside the replay, and that shows whether routes go back while the spike still lasts."""
    return {
        "enabled": True,
        "shed_window_seconds": 2,
        "min_parity_percent": 99.9,
        "min_samples": 30,
        "cooldown_seconds": 6.0 if timeline.seconds < 60 else 10.0,
        "ttl_seconds": 600.0,
        "interval_seconds": 0.5,
    }


def table_for(mode: str, shipped: dict[str, Any], timeline: load.Timeline) -> dict[str, Any]:
    """Mode a: legacy's limiter off; b: the shipped table; c: + autopilot, shadow, auto_offload."""
    document = copy.deepcopy(shipped)
    if mode == "a":
        legacy = document["clusters"][document.get("default_cluster", "legacy")]
        legacy["limiter"] = {**legacy.get("limiter", {}), "enabled": False}
    elif mode == "c":
        document["autopilot"] = autopilot_settings(timeline)
        for route in document["routes"]:
            if route["id"] in HOT_READS:
                route["auto_offload"] = True
                route["shadow"] = {**route.get("shadow", {}), "sample_rate": SHADOW_RATE}
    return document


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a TOML basic string for what tables hold
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key} = {_toml_value(item)}" for key, item in value.items()) + "}"
    raise TypeError(f"no TOML for {value!r}")


def to_toml(document: dict[str, Any]) -> str:
    """TOML for a route table (top-level keys, tables of tables, arrays of tables); checked by a
    round trip so a value it cannot write is an error here, not a different table."""
    lines = [
        f"{key} = {_toml_value(value)}"
        for key, value in document.items()
        if not isinstance(value, dict | list)
    ]
    for key, value in document.items():
        if isinstance(value, dict):
            nested = all(isinstance(item, dict) for item in value.values()) and value
            for name, table in value.items() if nested else [(None, value)]:
                lines += ["", f"[{key}.{name}]" if name else f"[{key}]"]
                lines += [f"{field} = {_toml_value(item)}" for field, item in table.items()]
        elif isinstance(value, list) and all(isinstance(item, dict) for item in value):
            for table in value:
                lines += [
                    "",
                    f"[[{key}]]",
                    *(f"{field} = {_toml_value(item)}" for field, item in table.items()),
                ]
    text = "\n".join(lines) + "\n"
    if tomllib.loads(text) != document:
        raise ValueError("the route table does not survive a round trip through TOML")
    return text


def _clear_store(store: redis.Redis) -> None:
    keys = list(store.scan_iter("gateway:*"))  # overrides, audit, and whatever the gateway shares
    if keys:
        store.delete(*keys)


def _audit(store: redis.Redis, wall_start: float) -> list[dict[str, Any]]:
    moves = []
    for _, fields in store.xrange("gateway:audit"):
        entry = json.loads(fields[b"entry"])
        after = entry.get("after") or {}
        moves.append(
            {
                "t": round(entry["at"] - wall_start, 2),
                "route": entry["route"],
                "actor": entry["actor"],
                "to": after.get("backend", "release"),
                "reason": entry["reason"],
            }
        )
    return sorted(moves, key=lambda move: move["t"])


def _database() -> psycopg.Connection:
    return psycopg.connect(PG_BENCH_URL.replace("postgres://", "postgresql://", 1))


def _stored_writes(marker: str) -> list[str]:
    with _database() as db:
        rows = db.execute("SELECT body FROM reviews_review WHERE body LIKE %s", (marker + " %",)).fetchall()
    return [body.split()[-1] for (body,) in rows]


def _remove_writes(pattern: str) -> None:
    """Delete the replay's reviews (and their share of the item counters, as review_delete does):
    a user reviews an item once, so left in place they would turn later runs' creates into 409s."""
    with _database() as db:
        db.execute(
            "WITH gone AS (DELETE FROM reviews_review WHERE body LIKE %s RETURNING item_id, rating) "
            "UPDATE items_item SET review_count = review_count - g.n, rating_total = rating_total - g.total "
            "FROM (SELECT item_id, count(*) AS n, sum(rating) AS total FROM gone GROUP BY item_id) AS g "
            "WHERE items_item.id = g.item_id",
            (pattern,),
        )


def _check_table(path: Path) -> str | None:
    """Why the gateway would refuse this table, or None."""
    from gateway.routes import RouteTableError, load_table

    try:
        load_table(path, {})
    except RouteTableError as exc:
        return str(exc)
    return None


def run_mode(
    mode: Mode,
    timeline: load.Timeline,
    env: dict[str, str],
    tokens: list[str],
    run_id: str,
    screenshot: bool = False,
) -> dict[str, Any]:
    """One mode on a fresh stack: the load, the probe, then the figures."""
    table = VAR / f"replay-{mode.key}-routes.toml"
    if mode.key == "b":
        shutil.copyfile(SHIPPED_TABLE, table)
    else:
        shipped = tomllib.loads(SHIPPED_TABLE.read_text(encoding="utf-8"))
        table.write_text(to_toml(table_for(mode.key, shipped, timeline)), encoding="utf-8")
    refused = _check_table(table)
    if refused:
        return {
            "key": mode.key,
            "title": mode.title,
            "skipped": f"the gateway refuses its route table: {refused}",
        }
    store = redis.Redis.from_url(REDIS_URL)
    _clear_store(store)
    ports = {name: free_port() for name in ("legacy", "reviews", "recommendations", "gateway")}
    env = {
        **env,
        "ROUTES_FILE": str(table),
        "GATEWAY_PORT": str(ports["gateway"]),
        **{
            f"{name.upper()}_URL": f"http://127.0.0.1:{ports[name]}"
            for name in ("legacy", "reviews", "recommendations")
        },
    }
    legacy_log = VAR / f"replay-{mode.key}-legacy-access.log"
    legacy_log.unlink(missing_ok=True)
    commands = {
        "legacy": [
            *legacy_command(ports["legacy"], workers=1, threads=2),
            f"--access-logfile={legacy_log}",
            f"--access-logformat={LEGACY_LOG_FORMAT}",
        ],
        "reviews": [sys.executable, "-m", "services.reviews"],
        "recommendations": [sys.executable, "-m", "services.recommendations"],
        "gateway": [sys.executable, "-m", "gateway"],
    }
    marker = f"spike-{run_id}-{mode.key}"
    load_average = os.getloadavg()
    with ExitStack() as stack:
        try:
            started = {
                name: stack.enter_context(
                    server_process(
                        commands[name], env, ports[name], log=VAR / f"replay-{mode.key}-{name}.log"
                    )
                )
                for name in commands
            }
        except SystemExit as exc:
            return {
                "key": mode.key,
                "title": mode.title,
                "skipped": f"{exc} (see var/bench/replay-{mode.key}-*.log)",
            }
        gateway = started["gateway"][0]
        if not tokens:
            tokens += load.sign_in(gateway, 20)
        start_at = time.monotonic() + 0.5
        wall_start = time.time() + 0.5
        probe = Probe(
            start_at=start_at,
            pids={name: pid for name, (_, pid) in started.items()},
            ports={name: ports[name] for name in ("legacy", "reviews", "recommendations")},
            metrics_url=f"{gateway}/_gateway/metrics",
            legacy_log=legacy_log,
        )
        flagctl_done: dict[str, float] = {}

        def flip() -> None:
            def run() -> None:
                subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "flags.cli",
                        "flip-all",
                        "--to",
                        "candidate",
                        "--ttl",
                        "1h",
                        "--reason",
                        "incident replay",
                    ],
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    check=False,
                )
                flagctl_done["exit_s"] = time.monotonic() - start_at

            threading.Thread(target=run, daemon=True).start()

        events = [(timeline.flip_at_s, "flip-all", flip)] if mode.human_flip else []
        print(f"[{mode.key}] {mode.title}: stack up, load average {load_average[0]:.2f}", flush=True)
        probe.start()
        results, happened, lag = load.run(gateway, tokens, timeline, start_at, mode.key, marker, events)
        time.sleep(1)  # the last answers, and legacy's log lines for them
        probe.stop()
        moves = _audit(store, wall_start)
        shot = RESULTS / f"console-{mode.key}.png"
        unshot = console_screenshot(gateway, env["GATEWAY_ADMIN_TOKEN"], shot) if screenshot else None
    stored = _stored_writes(marker)
    _remove_writes(marker + " %")
    figures = _figures(
        mode, timeline, results, happened, lag, moves, probe, stored, flagctl_done, load_average
    )
    if screenshot:
        figures["console_screenshot"] = unshot or str(shot)
    return figures


def _figures(
    mode: Mode,
    timeline: load.Timeline,
    results: list[report.Outcome],
    happened: dict[str, float],
    lag: list[float],
    moves: list[dict[str, Any]],
    probe: Probe,
    stored: list[str],
    flagctl: dict[str, float],
    load_average: tuple[float, float, float],
) -> dict[str, Any]:
    spike_from, spike_to = timeline.calm_s, timeline.spike_end_s
    rows = report.probe_rows(probe.samples)
    to_candidate = [m for m in moves if m["to"] == "candidate"]
    if mode.human_flip:
        human = [m for m in to_candidate if m["actor"] != "autopilot"]
        event_at = human[0]["t"] if human else happened.get("flip-all")
    else:
        auto = [m for m in to_candidate if m["actor"] == "autopilot"]
        event_at = auto[0]["t"] if auto else None
    before_to = event_at if event_at is not None else spike_to
    check = report.writes(results, stored)
    served_candidate = [
        o.sent
        for o in results
        if o.served_by not in ("", "legacy") and event_at is not None and o.sent >= event_at - 1
    ]
    saturated = [
        line
        for line in probe.legacy_lines
        if spike_from + timeline.ramp_s <= line.t < before_to and line.status != 503
    ]
    figures = {
        "key": mode.key,
        "title": mode.title,
        "load_average_at_start": [round(value, 2) for value in load_average],
        "event": {
            "kind": "flip-all" if mode.human_flip else "autopilot",
            "command_at_s": round(happened["flip-all"], 2) if "flip-all" in happened else None,
            "flagctl_exit_at_s": round(flagctl["exit_s"], 2) if "exit_s" in flagctl else None,
            "in_store_at_s": event_at,
            "first_candidate_answer_sent_at_s": round(min(served_candidate), 2) if served_candidate else None,
        },
        "moves": moves,
        "spike": report.window(results, spike_from, spike_to),
        "before": report.window(results, spike_from, before_to),
        "recovery_s": report.recovery(results, event_at, spike_to) if event_at is not None else None,
        "after_event": report.after_event(results, rows, probe.legacy_lines, event_at)
        if event_at is not None
        else None,
        "legacy_finished_rps_saturated": round(
            len(saturated) / max(1e-9, before_to - spike_from - timeline.ramp_s), 1
        ),
        "legacy_work": report.legacy_work(results, probe.legacy_lines),
        "generator_lag_ms_max": round(max(lag, default=0.0), 1),
        "writes": check,
        "writes_ok": report.writes_ok(check),
        "per_second": report.per_second(results, timeline.seconds),
        "probe": rows,
    }
    figures["unsteady_s"] = report.unsteady_seconds(figures)
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="shorter phases (all three modes in under 3 minutes)"
    )
    parser.add_argument("--modes", default="abc", help="which modes to run, e.g. 'bc' (default: abc)")
    parser.add_argument("--spike", type=float, default=None, help="spike rate in req/s (default 320)")
    parser.add_argument(
        "--screenshots",
        action="store_true",
        help="at the end of each mode, a screenshot of the ops console (bench/results/console-<mode>.png)",
    )
    args = parser.parse_args()
    chosen = [mode for mode in MODES if mode.key in args.modes]
    if not chosen or set(args.modes) - {mode.key for mode in MODES}:
        parser.error("--modes takes letters among a, b, c")
    require(NEEDS)
    timeline = load.QUICK if args.quick else load.FULL
    if args.spike:
        timeline = dataclasses.replace(timeline, spike_rps=args.spike)
    started = time.monotonic()
    VAR.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "DATABASE_URL": PG_BENCH_URL,
        "DJANGO_SETTINGS_MODULE": "legacy_django.config.django.local",
        "REDIS_URL": REDIS_URL,
        "UNLEASH_URL": "",
        "GATEWAY_WORKERS": "2",
        "GATEWAY_ADMIN_TOKEN": "bench-replay-admin-token",
        "VAR_DIR": str(VAR),
    }
    prepare_database(env, signing_keys=True)
    _remove_writes("spike-%")  # left by a replay that did not finish
    run_id = uuid.uuid4().hex[:8]
    tokens: list[str] = []  # signed in once, on the first stack: the signing key is the same in all
    modes = [run_mode(mode, timeline, env, tokens, run_id, args.screenshots) for mode in chosen]
    _clear_store(redis.Redis.from_url(REDIS_URL))
    summary = {
        "legacy_capacity": "gunicorn 1 worker x 2 threads",
        "spike_rps": timeline.spike_rps,
        "timeline": dataclasses.asdict(timeline),
        "p99_bound_ms": report.P99_BOUND_MS,
        "duration_s": round(time.monotonic() - started),
        "modes": modes,
    }
    write_result("incident_replay", summary)
    report.chart(modes, timeline, RESULTS / "incident_replay.png")
    print(report.markdown(modes))
    for mode in modes:
        print(report.after_text(mode))
    print(f"({summary['duration_s']} s in all) wrote {RESULTS / 'incident_replay.png'}")
    failed = [mode["key"] for mode in modes if "skipped" in mode or not mode["writes_ok"]]
    if failed:
        print(f"failed: mode(s) {', '.join(failed)} (not run, or the write check failed)", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
