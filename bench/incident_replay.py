"""Replay the 8 pm push spike: the monolith saturates, one `flagctl flip-all` moves the hot routes.

    .venv/bin/python bench/incident_replay.py [--quick]

Stack: PostgreSQL (BENCH_DATABASE_URL, seeded large), the monolith with a fixed small capacity
(gunicorn, 1 worker x 2 threads), both services (1 uvicorn worker each), the gateway (2 workers)
with overrides in Redis (database 15). Open-loop load from 20 signed-in users (tokens fetched
before the spike): 60 % reviews.list, 15 % reviews.summary, 15 % recommendations.home, 5 %
reviews.detail, 5 % POST reviews.create; it ramps to a spike and holds; client timeout 2 s.
At a fixed second, `flagctl flip-all --to candidate` runs. Reported per second: requests, error
rate, p99; time to recovery (error rate < 0.1 % and p99 < 500 ms for 3 s running); and the write
check: reviews in the database with this run's marker vs 201 answers. Writes
bench/results/incident_replay.json and incident_replay.png.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import subprocess
import sys
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import aiohttp
import psycopg
import redis

from bench._support import RESULTS, free_port, legacy_command, server, write_result

PG = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/shop_bench")
REDIS_URL = "redis://127.0.0.1:6379/15"
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
    flip_at: int,
    marker: str,
    env: dict[str, str],
) -> tuple[list[tuple[float, float, int]], float]:
    """Open loop: requests leave on schedule whatever the answers; (sent_at, latency_ms, status or 0)."""
    results: list[tuple[float, float, int]] = []
    timeout = aiohttp.ClientTimeout(total=2.0)
    connector = aiohttp.TCPConnector(limit=600)
    routes = [name for name, weight in MIX for _ in range(weight)]
    rng = random.Random(7)  # noqa: S311 - a load mix, not security
    flipped_at = 0.0
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
            results.append((sent, (time.monotonic() - sent) * 1000, status if kind != "create" else -status))

        start = time.monotonic()
        tasks: set[asyncio.Task[None]] = set()
        next_at = start
        while (now := time.monotonic()) - start < seconds:
            if not flipped_at and now - start >= flip_at:
                flipped_at = now - start
                await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "flags.cli",
                    "flip-all",
                    "--to",
                    "candidate",
                    "--reason",
                    "incident replay",
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            while next_at <= now:
                task = asyncio.create_task(one(next_at, rng.choice(routes)))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                next_at += 1.0 / _rate(next_at - start, ramp, spike)
            await asyncio.sleep(0.002)
        await asyncio.gather(*tasks)
    return [(sent - start, latency, status) for sent, latency, status in results], flipped_at


def _per_second(results: list[tuple[float, float, int]], seconds: int) -> list[dict[str, float]]:
    rows = []
    for second in range(seconds):
        window = [(lat, status) for sent, lat, status in results if second <= sent < second + 1]
        errors = sum(1 for _, status in window if abs(status) == 0 or abs(status) >= 500)
        latencies = sorted(lat for lat, _ in window)
        p99 = latencies[int(len(latencies) * 0.99)] if latencies else 0.0
        rows.append(
            {
                "second": second,
                "requests": len(window),
                "errors": errors,
                "error_rate": errors / len(window) if window else 0.0,
                "p99_ms": p99,
            }
        )
    return rows


def _recovery(rows: list[dict[str, float]], flip_at: float) -> float | None:
    for row in rows:
        if row["second"] < flip_at:
            continue
        run = [r for r in rows if row["second"] <= r["second"] < row["second"] + 3]
        if len(run) == 3 and all(r["error_rate"] < 0.001 and r["p99_ms"] < P99_BOUND_MS for r in run):
            return row["second"] - flip_at
    return None


def _chart(rows: list[dict[str, float]], flip_at: float, path: Path) -> None:
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
    for axis in axes:
        axis.axvline(flip_at, color="black", linestyle="--")
    axes[0].set_title("8 pm push spike replay: all hot routes on legacy, then flagctl flip-all (dashed)")
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="shorter phases")
    quick = parser.parse_args().quick
    seconds, flip_at, ramp, spike = (30, 14, 6.0, 320.0) if quick else (60, 30, 15.0, 400.0)
    marker = f"spike-{uuid.uuid4().hex[:8]}"
    admin = redis.Redis.from_url(REDIS_URL)
    admin.delete("gateway:overrides", "gateway:audit")
    ports = {name: free_port() for name in ("legacy", "reviews", "recommendations", "gateway")}
    env = {
        **os.environ,
        "DATABASE_URL": PG,
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
    (ROOT / "var" / "bench").mkdir(parents=True, exist_ok=True)
    for args in (["migrate", "-v0"], ["signing_keys", "ensure"], ["seed", "--scale", "large"]):
        subprocess.run([sys.executable, "-m", "legacy_django", *args], env=env, cwd=ROOT, check=True)
    commands = {
        "legacy": legacy_command(ports["legacy"], workers=1, threads=2),
        "reviews": [sys.executable, "-m", "services.reviews"],
        "recommendations": [sys.executable, "-m", "services.recommendations"],
        "gateway": [sys.executable, "-m", "gateway"],
    }
    with ExitStack() as stack:
        urls = {name: stack.enter_context(server(commands[name], env, ports[name])) for name in commands}
        tokens = []
        import httpx

        for n in range(1, 21):
            response = httpx.post(
                f"{urls['gateway']}/api/v1/auth/token",
                timeout=30,
                json={"username": f"user{n:05d}", "password": "demo-password"},
            )
            tokens.append(response.json()["access_token"])
        print(
            f"stack up; {len(tokens)} users signed in; spike {spike:.0f} req/s, flip at {flip_at} s",
            flush=True,
        )
        results, flipped = asyncio.run(
            _load(urls["gateway"], tokens, seconds, ramp, spike, flip_at, marker, env)
        )
        time.sleep(1)
    admin.delete("gateway:overrides", "gateway:audit")
    rows = _per_second(results, seconds)
    with psycopg.connect(PG.replace("postgres://", "postgresql://", 1)) as db:
        written = db.execute(
            "SELECT count(*) FROM reviews_review WHERE body LIKE %s", (marker + "%",)
        ).fetchone()[0]
    creates = [status for _, _, status in results if status <= 0]
    acknowledged = sum(1 for status in creates if status == -201)
    timed_out = sum(1 for status in creates if status == 0)
    before = [r for r in rows if 3 <= r["second"] < flipped]
    recovery = _recovery(rows, flipped)
    summary = {
        "legacy_capacity": "gunicorn 1 worker x 2 threads",
        "spike_rps": spike,
        "flip_at_s": flipped,
        "before_flip": {
            "error_rate": sum(r["errors"] for r in before) / max(1, sum(r["requests"] for r in before)),
            "p99_ms_max": max((r["p99_ms"] for r in before), default=0.0),
        },
        "recovery_s": recovery,
        "p99_bound_ms": P99_BOUND_MS,
        "writes": {
            "acknowledged_201": acknowledged,
            "in_database": written,
            "client_timeouts": timed_out,
            "attempted": len(creates),
        },
        "per_second": rows,
    }
    write_result("incident_replay", summary)
    _chart(rows, flipped, RESULTS / "incident_replay.png")
    print(
        f"before the flip: error rate {summary['before_flip']['error_rate'] * 100:.1f} %, "
        f"worst p99 {summary['before_flip']['p99_ms_max']:.0f} ms"
    )
    recovered = f"{recovery:.0f} s" if recovery is not None else "not within the run"
    print(f"recovery after flip-all: {recovered}")
    print(
        f"writes: {acknowledged} acknowledged (201), {written} in the database, {timed_out} client timeouts "
        f"of {len(creates)} attempted"
    )
    print(f"wrote {RESULTS / 'incident_replay.png'}")
    ok = written >= acknowledged and written - acknowledged <= timed_out
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
