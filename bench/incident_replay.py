"""Replay the 8 pm push spike: the monolith saturates, one `flagctl flip-all` moves the hot routes.

    .venv/bin/python bench/incident_replay.py [--quick]

Stack: PostgreSQL (BENCH_DATABASE_URL, default shop_bench: created if missing, migrated, seeded
large), the monolith with a fixed small capacity (gunicorn, 1 worker x 2 threads), both services
(1 uvicorn worker each), the gateway (2 workers) with overrides in Redis
(database 14; the tests use 15). Open-loop
load from 20 signed-in users (tokens fetched before the spike): 60 % reviews.list, 15 %
reviews.summary, 15 % recommendations.home, 5 % reviews.detail, 5 % POST reviews.create; it ramps
to a spike and holds; client timeout 2 s. At a fixed second, `flagctl flip-all --to candidate`
runs. Reported per second: requests, error rate, p99; time to recovery (error rate < 0.1 % and
p99 < 500 ms for 3 s running); and the write check: reviews in the database with this run's
marker vs 201 answers. Writes bench/results/incident_replay.json and incident_replay.png.
Needs aiohttp and matplotlib (`make bench-tools`), the local Redis and PostgreSQL.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import psutil
import psycopg
import redis

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
P99_BOUND_MS = 500.0
MIX = [("list", 60), ("summary", 15), ("home", 15), ("detail", 5), ("create", 5)]


def _rate(second: float, ramp: float, spike: float) -> float:
    return 40 + (spike - 40) * min(1.0, second / ramp)


async def _load(
    gateway: str,
    tokens: list[str],
    seconds: int,
    ramp: float,
    spike: float,
    events: list[tuple[float, str, Callable[[], None]]],
    marker: str,
) -> tuple[list[tuple[float, float, int]], dict[str, float]]:
    """Open loop: requests leave on schedule whatever the answers.

    One (sent_at, latency_ms, status or 0 when no answer came, is_create) per request.

    Needs aiohttp (the [bench] extra: ``make bench-tools``).

    ``events`` (second, name, action) run once each at their second; returns when each ran.
    """
    import aiohttp  # a bench extra: imported here so --help works without it

    results: list[tuple[float, float, int, bool]] = []
    timeout = aiohttp.ClientTimeout(total=2.0)
    connector = aiohttp.TCPConnector(limit=600)
    routes = [name for name, weight in MIX for _ in range(weight)]
    rng = random.Random(7)  # noqa: S311 - a load mix, not security
    happened: dict[str, float] = {}
    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, cookie_jar=aiohttp.DummyCookieJar()
    ) as session:

        async def one(sent: float, kind: str) -> None:
            token = rng.choice(tokens)
            headers = {"Authorization": f"Bearer {token}"}
            item = rng.randint(1, 500)
            try:
                if kind == "create":
                    body = {"item_id": item, "rating": 5, "body": f"{marker} {uuid.uuid4().hex}"}
                    request = session.post(f"{gateway}/api/v1/reviews", json=body, headers=headers)
                else:
                    path = {
                        "list": f"/api/v1/reviews/items/{item}?size=20",
                        "summary": f"/api/v1/reviews/items/{item}/summary",
                        "home": "/api/v1/recommendations/home?limit=10",
                        "detail": f"/api/v1/reviews/{rng.randint(1, 20000)}",
                    }[kind]
                    request = session.get(f"{gateway}{path}", headers=headers)
                async with request as response:
                    await response.read()
                    status = response.status
            except (TimeoutError, aiohttp.ClientError):
                status = 0
            results.append((sent, (time.monotonic() - sent) * 1000, status, kind == "create"))

        start = time.monotonic()
        tasks: set[asyncio.Task[None]] = set()
        next_at = start
        while (now := time.monotonic()) - start < seconds:
            for at, name, action in events:
                if name not in happened and now - start >= at:
                    happened[name] = now - start
                    action()
            while next_at <= now:
                task = asyncio.create_task(one(next_at, rng.choice(routes)))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                next_at += 1.0 / _rate(next_at - start, ramp, spike)
            await asyncio.sleep(0.002)
        await asyncio.gather(*tasks)
    return [(sent - start, latency, status, create) for sent, latency, status, create in results], happened


def _per_second(results: list[tuple[float, float, int, bool]], seconds: int) -> list[dict[str, float]]:
    rows = []
    for second in range(seconds):
        window = [(lat, status) for sent, lat, status, _ in results if second <= sent < second + 1]
        errors = sum(1 for _, status in window if status == 0 or status >= 500)
        latencies = sorted(lat for lat, _ in window)
        p99 = latencies[int(len(latencies) * 0.99)] if latencies else 0.0
        rows.append(
            {
                "second": second,
                "requests": len(window),
                "errors": errors,
                "no_answer": sum(1 for _, status in window if status == 0),
                "error_rate": errors / len(window) if window else 0.0,
                "p99_ms": p99,
            }
        )
    return rows


def _writes(results: list[tuple[float, float, int, bool]]) -> dict[str, int]:
    """The creates: answered 201, got no answer (client timeout or dropped connection), attempted."""
    creates = [status for _, _, status, create in results if create]
    return {
        "acknowledged_201": sum(1 for status in creates if status == 201),
        "client_timeouts": sum(1 for status in creates if status == 0),
        "attempted": len(creates),
    }


def _recovery(rows: list[dict[str, float]], flip_at: float, until: float = 1e9) -> float | None:
    for row in rows:
        if row["second"] < flip_at or row["second"] >= until:
            continue
        run = [r for r in rows if row["second"] <= r["second"] < row["second"] + 3]
        if len(run) == 3 and all(r["error_rate"] < 0.001 and r["p99_ms"] < P99_BOUND_MS for r in run):
            return row["second"] - flip_at
    return None


def _chart(rows: list[dict[str, float]], events: dict[str, float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    seconds = [r["second"] for r in rows]
    figure, axes = plt.subplots(3, 1, figsize=(10, 8), sharex=True)
    axes[0].plot(seconds, [r["requests"] - r["errors"] for r in rows], label="answered")
    axes[0].plot(seconds, [r["errors"] for r in rows], label="errors / timeouts", color="tab:red")
    axes[0].set_ylabel("requests / s")
    axes[0].legend(loc="upper left")
    axes[1].plot(seconds, [r["error_rate"] * 100 for r in rows], color="tab:red")
    axes[1].set_ylabel("error rate %")
    axes[2].plot(seconds, [r["p99_ms"] for r in rows], color="tab:purple")
    axes[2].axhline(P99_BOUND_MS, color="grey", linestyle=":", label=f"{P99_BOUND_MS:.0f} ms bound")
    axes[2].set_ylabel("p99 ms")
    axes[2].set_xlabel("seconds")
    axes[2].legend(loc="upper left")
    styles = {
        "flip-all": ("black", "--"),
        "candidate breaks": ("tab:red", ":"),
        "route back": ("tab:green", "--"),
    }
    for name, at in events.items():
        color, style = styles[name]
        for axis in axes:
            axis.axvline(at, color=color, linestyle=style)
        axes[0].annotate(name, (at, axes[0].get_ylim()[1] * 0.92), rotation=90, fontsize=8, ha="right")
    axes[0].set_title("8 pm spike replay: legacy saturates; flip-all; a candidate breaks; its routes go back")
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="shorter phases")
    quick = parser.parse_args().quick
    require(NEEDS)
    seconds, flip_at, break_at, back_at, ramp, spike = (
        (50, 14, 32, 36, 6.0, 320.0) if quick else (80, 30, 50, 56, 15.0, 400.0)
    )
    marker = f"spike-{uuid.uuid4().hex[:8]}"
    admin = redis.Redis.from_url(REDIS_URL)
    admin.delete("gateway:overrides", "gateway:audit")
    ports = {name: free_port() for name in ("legacy", "reviews", "recommendations", "gateway")}
    env = {
        **os.environ,
        "DATABASE_URL": PG_BENCH_URL,
        "DJANGO_SETTINGS_MODULE": "legacy_django.config.django.local",
        "REDIS_URL": REDIS_URL,
        "UNLEASH_URL": "",
        "GATEWAY_WORKERS": "2",
        "GATEWAY_PORT": str(ports["gateway"]),
        "LEGACY_URL": f"http://127.0.0.1:{ports['legacy']}",
        "REVIEWS_URL": f"http://127.0.0.1:{ports['reviews']}",
        "RECOMMENDATIONS_URL": f"http://127.0.0.1:{ports['recommendations']}",
        "VAR_DIR": str(ROOT / "var" / "bench"),
    }
    prepare_database(env, signing_keys=True)
    commands = {
        "legacy": legacy_command(ports["legacy"], workers=1, threads=2),
        "reviews": [sys.executable, "-m", "services.reviews"],
        "recommendations": [sys.executable, "-m", "services.recommendations"],
        "gateway": [sys.executable, "-m", "gateway"],
    }
    with ExitStack() as stack:
        started = {
            name: stack.enter_context(server_process(commands[name], env, ports[name])) for name in commands
        }
        urls = {name: url for name, (url, _) in started.items()}
        broken = psutil.Process(started["recommendations"][1])
        stack.callback(lambda: broken.resume() if broken.is_running() else None)
        import httpx

        tokens = []
        for n in range(1, 21):
            response = httpx.post(
                f"{urls['gateway']}/api/v1/auth/token",
                timeout=30,
                json={"username": f"user{n:05d}", "password": "demo-password"},
            )
            tokens.append(response.json()["access_token"])
        print(f"stack up; {len(tokens)} users signed in; spike {spike:.0f} req/s", flush=True)

        def flagctl(*args: str) -> None:
            subprocess.Popen(
                [sys.executable, "-m", "flags.cli", *args, "--reason", "incident replay"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )

        def route_back() -> None:
            # Through the admin API (same store and audit trail as flagctl): three flagctl processes
            # starting at once would steal the 2 cores from the load being measured.
            token = env.get("GATEWAY_ADMIN_TOKEN", "dev-only-admin-token")

            def send() -> None:
                for route in ("recommendations.home", "recommendations.similar", "recommendations.recent"):
                    httpx.post(
                        f"{urls['gateway']}/_gateway/admin/overrides",
                        timeout=5,
                        headers={"Authorization": f"Bearer {token}"},
                        json={
                            "route": route,
                            "backend": "legacy",
                            "reason": "incident replay: candidate broken",
                        },
                    )

            threading.Thread(target=send, daemon=True).start()

        events: list[tuple[float, str, Callable[[], None]]] = [
            (flip_at, "flip-all", lambda: flagctl("flip-all", "--to", "candidate")),
            (break_at, "candidate breaks", broken.suspend),  # the recommendations service hangs
            (back_at, "route back", route_back),
        ]
        results, happened = asyncio.run(_load(urls["gateway"], tokens, seconds, ramp, spike, events, marker))
        time.sleep(1)
    admin.delete("gateway:overrides", "gateway:audit")
    rows = _per_second(results, seconds)
    with psycopg.connect(PG_BENCH_URL.replace("postgres://", "postgresql://", 1)) as db:
        written = db.execute(
            "SELECT count(*) FROM reviews_review WHERE body LIKE %s", (marker + "%",)
        ).fetchone()[0]
    writes = _writes(results)
    acknowledged, timed_out = writes["acknowledged_201"], writes["client_timeouts"]
    flipped = happened["flip-all"]
    before = [r for r in rows if 3 <= r["second"] < flipped]
    recovery = _recovery(rows, flipped, until=happened["candidate breaks"])
    broken_rows = [r for r in rows if happened["candidate breaks"] <= r["second"] < happened["route back"]]
    recovery_back = _recovery(rows, happened["route back"])
    summary = {
        "legacy_capacity": "gunicorn 1 worker x 2 threads",
        "spike_rps": spike,
        "flip_at_s": flipped,
        "before_flip": {
            "error_rate": sum(r["errors"] for r in before) / max(1, sum(r["requests"] for r in before)),
            "p99_ms_max": max((r["p99_ms"] for r in before), default=0.0),
        },
        "recovery_s": recovery,
        "candidate_broken": {
            "at_s": happened["candidate breaks"],
            "routed_back_at_s": happened["route back"],
            "error_rate": sum(r["errors"] for r in broken_rows)
            / max(1, sum(r["requests"] for r in broken_rows)),
            "recovery_s": recovery_back,
        },
        "p99_bound_ms": P99_BOUND_MS,
        "writes": {**writes, "in_database": written},
        "per_second": rows,
    }
    write_result("incident_replay", summary)
    _chart(rows, happened, RESULTS / "incident_replay.png")
    print(
        f"before the flip: error rate {summary['before_flip']['error_rate'] * 100:.1f} %, "
        f"worst p99 {summary['before_flip']['p99_ms_max']:.0f} ms"
    )

    def seconds_or_not(value: float | None) -> str:
        return f"{value:.0f} s" if value is not None else "not within the run"

    print(f"recovery after flip-all: {seconds_or_not(recovery)}")
    print(
        f"candidate broken: error rate {summary['candidate_broken']['error_rate'] * 100:.1f} %; "
        f"recovery after routing it back: {seconds_or_not(recovery_back)}"
    )
    print(
        f"writes: {acknowledged} acknowledged (201), {written} in the database, {timed_out} client timeouts "
        f"of {writes['attempted']} attempted"
    )
    print(f"wrote {RESULTS / 'incident_replay.png'}")
    ok = written >= acknowledged and written - acknowledged <= timed_out
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
