"""The time-deal incident, measured: 1,000 concurrent buyers through the gateway on PostgreSQL, once
per stock strategy, with the invariants checked after each.

    .venv/bin/python bench/timedeal.py [--quick] [--buyers 1000] [--stock-per-option 300]
                                        [--strategies naive,ordered]

Per strategy a fresh stack over the PostgreSQL database BENCH_TIMEDEAL_DATABASE_URL (default
shop_bench_timedeal: created if missing, migrated and seeded large once; a database of its own
because every run adds a deal item and orders): the monolith (gunicorn, 2 workers x 8 threads)
started with LEGACY_STOCK_STRATEGY=<strategy>, the gateway (1 worker) in front of it, and a new time
deal (`python -m legacy_django timedeal create --options 4 --stock-per-option N --json`). Every
buyer (the seeded users user00001…, each with a token the monolith issued beforehand) sends one
order at the same moment: 1 to 3 of the deal's options in random order, one unit each, with an
Idempotency-Key; clients wait at most 60 s. The gateway's route table for the run has legacy's
adaptive limit off and an upstream pool as large as the burst, so every order reaches the database
(what is measured is the database, not the gateway's shedding), and the shipped 1 s connect timeout
with a 25 s read timeout (legacy refuses an identity assertion older than 30 s). Then up to 100
placed orders are sent again with their key, as an app retries (after Retry-After on a 503): each
must be answered with the same order, and no order may be added.

  naive    the incident's order: option, item, option, item … in request order (ADR 0015);
  ordered  the shipped order: every option by id, then the item once.

Reported per strategy: placed, sold out, 5xx (by who answered), PostgreSQL's deadlocks
(pg_stat_database.deadlocks of the database, read once legacy's sessions have ended; and the
40P01 lines in legacy's log), p50/p99 latency, orders/s, and the invariants: units sold per
option = initial - remaining, item stock = the sum of its options' stock, nothing negative, no
oversold unit, for every buyer: a 201 is one stored order, an error answer stored nothing (a
request the gateway timed out may or may not be stored: counted), at most one order each, and the
retries added none. --quick: 300 buyers, 100 units per option. Writes bench/results/timedeal.json
(logs: var/bench-timedeal/);
exits 1 if the shipped strategy deadlocked, answered a 5xx or broke an invariant. Needs aiohttp
(`make bench-tools`) and PostgreSQL.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import time
import uuid
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._support import (
    Needs,
    free_port,
    latency_summary,
    legacy_command,
    prepare_database,
    require,
    server_process,
    write_result,
)
from flags import default_flags

NEEDS = Needs(modules=("aiohttp",), postgres=True)
DATABASE_URL = os.environ.get(
    "BENCH_TIMEDEAL_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/shop_bench_timedeal"
)
SECRET = "bench-identity-secret"  # noqa: S105 - a throwaway secret for local servers
VAR = ROOT / "var" / "bench-timedeal"
OPTIONS = 4
REPLAYS = 100
CLIENT_TIMEOUT_S = 60.0
RETRY_FOR_S = 30.0
LOAD_SEED = 20261127
# Legacy only (orders are not a hot route), no adaptive limit, a pool as large as the burst.
ROUTE_TABLE = """default_cluster = "legacy"
default_auth = "optional"

[clusters.legacy]
url = "http://127.0.0.1:8001"
max_in_flight = 4096
max_connections = 2100
connect_timeout = 1.0
read_timeout = 25.0
limiter = {enabled = false}
"""
ISSUE_TOKENS = """
import json, sys
import django
django.setup()
from legacy_django.common.auth import issue_access_token
from legacy_django.users.models import User
names = [f"user{n:05d}" for n in range(1, int(sys.argv[1]) + 1)]
ids = dict(User.objects.filter(username__in=names).values_list("username", "id"))
print(json.dumps([[ids[name], issue_access_token(ids[name], "user")[0]] for name in names]))
"""


@dataclass(frozen=True)
class Purchase:
    """One buyer's order: who, which options (in the order sent), under which key."""

    user_id: int
    token: str
    options: tuple[int, ...]
    key: str


@dataclass
class Outcome:
    status: int  # 0: no answer (the client gave up or the connection failed)
    ms: float
    served_by: str = ""
    code: str = ""
    order_id: int | None = None
    replayed: bool = False
    attempts: int = 1


@dataclass
class Buyers:
    users: list[tuple[int, str]] = field(default_factory=list)

    def purchases(self, option_ids: list[int]) -> list[Purchase]:
        rng = random.Random(LOAD_SEED)  # noqa: S311 - a reproducible load, not a secret
        return [
            Purchase(user_id, token, tuple(rng.sample(option_ids, rng.randint(1, 3))), str(uuid.uuid4()))
            for user_id, token in self.users
        ]


def _manage(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "legacy_django", *args], env=env, cwd=ROOT, capture_output=True, text=True
    )
    if result.returncode != 0:
        raise SystemExit(f"legacy_django {' '.join(args)} failed:\n{result.stderr}")
    return result.stdout


def _buyers(env: dict[str, str], count: int) -> Buyers:
    """user00001…, each with an access token signed by the monolith's key (the password check is not
    what is measured, and 1,000 of them would take minutes)."""
    result = subprocess.run(
        [sys.executable, "-c", ISSUE_TOKENS, str(count)],
        env={**env, "JWT_ACCESS_TTL_SECONDS": "3600"},
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return Buyers([(int(user_id), str(token)) for user_id, token in json.loads(result.stdout)])


async def _send_all(
    gateway: str, purchases: list[Purchase], *, retry_503: bool
) -> tuple[list[Outcome], float]:
    """Every purchase at once; (outcomes in order, seconds from the start to the last answer). With
    ``retry_503`` a 503 is sent again (same key) after its Retry-After, for up to 30 s: what an app does."""
    import aiohttp

    go = asyncio.Event()
    timeout = aiohttp.ClientTimeout(total=CLIENT_TIMEOUT_S)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=timeout) as session:

        async def send(purchase: Purchase) -> Outcome:
            body = {"lines": [{"option_id": option_id, "quantity": 1} for option_id in purchase.options]}
            headers = {"Authorization": f"Bearer {purchase.token}", "Idempotency-Key": purchase.key}
            sent = time.monotonic()
            try:
                async with session.post(f"{gateway}/api/v1/orders", json=body, headers=headers) as response:
                    raw = await response.read()
                    outcome = Outcome(
                        response.status,
                        (time.monotonic() - sent) * 1000,
                        response.headers.get("X-Served-By", ""),
                        replayed=response.headers.get("Idempotent-Replayed") == "true",
                    )
            except (TimeoutError, aiohttp.ClientError) as error:
                return Outcome(0, (time.monotonic() - sent) * 1000, code=type(error).__name__)
            data = json.loads(raw) if raw else None
            if outcome.status == 201:
                outcome.order_id = data["id"]
            elif isinstance(data, dict) and "error" in data:
                outcome.code = data["error"]["code"]
            return outcome

        async def buy(purchase: Purchase) -> Outcome:
            await go.wait()
            until = time.monotonic() + RETRY_FOR_S
            attempts = 1
            outcome = await send(purchase)
            while retry_503 and outcome.status == 503 and time.monotonic() < until:
                await asyncio.sleep(1.0)  # Retry-After: 1
                attempts += 1
                outcome = await send(purchase)
            outcome.attempts = attempts
            return outcome

        tasks = [asyncio.create_task(buy(purchase)) for purchase in purchases]
        await asyncio.sleep(0)  # every task is now waiting on `go`: release them together
        started = time.monotonic()
        go.set()
        outcomes = await asyncio.gather(*tasks)
        return list(outcomes), time.monotonic() - started


def _pg(url: str) -> Any:
    import psycopg

    return psycopg.connect(url.replace("postgres://", "postgresql://", 1), autocommit=True)


def _deadlocks(url: str) -> int:
    with _pg(url) as connection:
        row = connection.execute(
            "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone()
        return int(row[0])


def _setting(url: str, name: str) -> str:
    with _pg(url) as connection:
        return str(connection.execute("SELECT current_setting(%s)", (name,)).fetchone()[0])


def _wait_for_sessions(url: str, *, busy_only: bool, deadline_s: float = 90.0) -> None:
    """Until no other session of the database is inside a statement or transaction (``busy_only``:
    legacy finished what the gateway gave up on), or none is connected at all (its backends have
    exited, so their statistics, the deadlock count, are flushed)."""
    query = (
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND pid <> pg_backend_pid() AND (state <> 'idle' OR NOT %s)"
    )
    deadline = time.monotonic() + deadline_s
    with _pg(url) as connection:
        while time.monotonic() < deadline:
            if connection.execute(query, (busy_only,)).fetchone()[0] == 0:
                return
            time.sleep(0.1)
    raise SystemExit(f"legacy's database sessions did not end within {deadline_s:.0f} s")


def _stored(
    url: str, deal: dict[str, Any]
) -> tuple[dict[int, int], int, dict[int, int], dict[int, list[int]]]:
    """(remaining stock per option, item stock, units sold per option, order ids per user) of the deal."""
    options = deal["option_ids"]
    with _pg(url) as connection:
        remaining = dict(
            connection.execute("SELECT id, stock FROM items_itemoption WHERE id = ANY(%s)", (options,))
        )
        (item_stock,) = connection.execute(
            "SELECT stock FROM items_item WHERE id = %s", (deal["item_id"],)
        ).fetchone()
        sold = dict(
            connection.execute(
                "SELECT option_id, SUM(quantity) FROM commerce_orderline WHERE option_id = ANY(%s) "
                "GROUP BY option_id",
                (options,),
            )
        )
        orders: dict[int, list[int]] = {}
        for user_id, order_id in connection.execute(
            "SELECT DISTINCT o.user_id, o.id FROM commerce_order o "
            "JOIN commerce_orderline l ON l.order_id = o.id WHERE l.option_id = ANY(%s)",
            (options,),
        ):
            orders.setdefault(user_id, []).append(order_id)
    return remaining, item_stock, {option: int(sold.get(option, 0)) for option in options}, orders


def _invariants(
    url: str,
    deal: dict[str, Any],
    purchases: list[Purchase],
    outcomes: list[Outcome],
    orders_after_retries: int,
) -> dict[str, Any]:
    remaining, item_stock, sold, orders = _stored(url, deal)
    initial = deal["stock_per_option"]
    acknowledged_missing = error_but_stored = unknown_stored = 0
    for purchase, outcome in zip(purchases, outcomes, strict=True):
        stored = orders.get(purchase.user_id, [])
        if outcome.status == 201:
            acknowledged_missing += stored != [outcome.order_id]
        elif outcome.status == 0 or outcome.code == "upstream_timeout":
            unknown_stored += len(stored)  # the gateway or client gave up: either is right
        else:
            error_but_stored += len(stored)  # an error answer must mean nothing was written
    checks = {
        "sold_is_initial_minus_remaining": all(sold[o] == initial - remaining[o] for o in sold),
        "item_stock_is_the_sum_of_options": item_stock == sum(remaining.values()),
        "nothing_negative": min([item_stock, *remaining.values()]) >= 0,
        "no_oversold_unit": sum(max(0, units - initial) for units in sold.values()) == 0,
        "every_201_is_one_stored_order": acknowledged_missing == 0,
        "no_order_behind_an_error": error_but_stored == 0,
        "at_most_one_order_per_buyer": all(len(ids) == 1 for ids in orders.values()),
        "retries_added_no_order": orders_after_retries == sum(len(ids) for ids in orders.values()),
    }
    return {
        "hold": all(checks.values()),
        "checks": checks,
        "initial_per_option": initial,
        "remaining": {str(option): stock for option, stock in remaining.items()},
        "sold": {str(option): units for option, units in sold.items()},
        "item_stock": item_stock,
        "stored_orders": sum(len(ids) for ids in orders.values()),
        "stored_without_an_answer": unknown_stored,
    }


def _orders_on(url: str, deal: dict[str, Any]) -> int:
    return sum(len(ids) for ids in _stored(url, deal)[3].values())


def _answers(outcomes: list[Outcome]) -> dict[str, int]:
    """How many got each answer: ``"201 ok (legacy)"``, ``"409 sold_out (legacy)"``, ``"504 … (gateway)"``."""
    return dict(
        Counter(f"{o.status} {o.code or 'ok'} ({o.served_by or 'no answer'})" for o in outcomes).most_common()
    )


def _run_strategy(
    strategy: str, stock: int, env: dict[str, str], buyers: Buyers, work: Path
) -> dict[str, Any]:
    ports = {"legacy": free_port(), "gateway": free_port()}
    env = {
        **env,
        "LEGACY_STOCK_STRATEGY": strategy,
        "LEGACY_URL": f"http://127.0.0.1:{ports['legacy']}",
        "GATEWAY_PORT": str(ports["gateway"]),
    }
    create = ["timedeal", "create", "--options", str(OPTIONS), "--stock-per-option", str(stock), "--json"]
    deal = json.loads(_manage(env, *create, "--name", f"Bench Time Deal ({strategy})"))
    purchases = buyers.purchases(deal["option_ids"])
    log = work / f"legacy-{strategy}.log"
    deadlocks_before = _deadlocks(DATABASE_URL)
    with ExitStack() as stack:
        legacy = legacy_command(ports["legacy"], workers=2, threads=8)
        stack.enter_context(server_process(legacy, env, ports["legacy"], log))
        gateway, _ = stack.enter_context(
            server_process([sys.executable, "-m", "gateway"], env, ports["gateway"], work / "gateway.log")
        )
        outcomes, seconds = asyncio.run(_send_all(gateway, purchases, retry_503=False))
        placed = [n for n, outcome in enumerate(outcomes) if outcome.status == 201][:REPLAYS]
        _wait_for_sessions(DATABASE_URL, busy_only=True)
        orders_before_retries = _orders_on(DATABASE_URL, deal)
        retries, _ = asyncio.run(_send_all(gateway, [purchases[n] for n in placed], retry_503=True))
    _wait_for_sessions(DATABASE_URL, busy_only=False)
    deadlocks = _deadlocks(DATABASE_URL) - deadlocks_before
    logged = sum("40P01" in line for line in log.read_text(errors="replace").splitlines())
    invariants = _invariants(DATABASE_URL, deal, purchases, outcomes, orders_before_retries)
    same_order = all(
        retry.status == 201 and retry.replayed and retry.order_id == outcomes[n].order_id
        for retry, n in zip(retries, placed, strict=True)
    )
    invariants["checks"]["retries_answered_the_same_order"] = same_order
    invariants["hold"] = invariants["hold"] and same_order
    statuses = Counter(outcome.status for outcome in outcomes)
    return {
        "strategy": strategy,
        "deal": deal,
        "buyers": len(outcomes),
        "placed": statuses[201],
        "sold_out": sum(outcome.code == "sold_out" for outcome in outcomes),
        "5xx": sum(count for status, count in statuses.items() if status >= 500),
        "no_answer": statuses[0],
        "answers": _answers(outcomes),
        "deadlocks": deadlocks,
        "deadlocks_logged_by_legacy": logged,
        "seconds": round(seconds, 2),
        "orders_per_s": round(statuses[201] / seconds, 1),
        **{key: round(value, 1) for key, value in latency_summary([o.ms for o in outcomes]).items()},
        "units_sold": sum(invariants["sold"].values()),
        "retries": {
            "sent": len(retries),
            "answers": _answers(retries),
            "attempts": sum(retry.attempts for retry in retries),
        },
        "invariants": invariants,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="300 buyers, 100 units per option")
    parser.add_argument("--buyers", type=int, default=None, help="default 1000 (300 with --quick)")
    parser.add_argument("--stock-per-option", type=int, default=None, help="default 300 (100 with --quick)")
    parser.add_argument("--strategies", default="naive,ordered", help="naive, ordered or both (default)")
    options = parser.parse_args()
    buyers = options.buyers if options.buyers is not None else (300 if options.quick else 1000)
    stock = (
        options.stock_per_option if options.stock_per_option is not None else (100 if options.quick else 300)
    )
    strategies = [name.strip() for name in options.strategies.split(",") if name.strip()]
    if not 1 <= buyers <= 2000 or stock < 0:
        parser.error("--buyers must be 1..2000 (the seeded users), --stock-per-option at least 0")
    if not strategies or not set(strategies) <= {"naive", "ordered"}:
        parser.error("--strategies: naive, ordered or both")
    require(NEEDS)
    work = VAR  # the route table, flags, and each run's logs (legacy-<strategy>.log, gateway.log)
    work.mkdir(parents=True, exist_ok=True)
    (work / "routes.toml").write_text(ROUTE_TABLE)
    (work / "flags.json").write_text(json.dumps(default_flags([])))
    env = {
        **os.environ,
        "DATABASE_URL": DATABASE_URL,
        "VAR_DIR": str(VAR),
        "IDENTITY_SECRET": SECRET,
        "DJANGO_SETTINGS_MODULE": "legacy_django.config.django.local",
        "ROUTES_FILE": str(work / "routes.toml"),
        "FLAGS_FILE": str(work / "flags.json"),
        "OVERRIDES_FILE": str(work / "overrides.json"),
        "GATEWAY_WORKERS": "1",
        "GATEWAY_ACCESS_LOG": "false",
        "REDIS_URL": "",
        "UNLEASH_URL": "",
    }
    prepare_database(env, signing_keys=True)
    people = _buyers(env, buyers)
    header = (
        "strategy",
        "placed",
        "sold out",
        "5xx",
        "deadlocks",
        "p50 ms",
        "p99 ms",
        "orders/s",
        "invariants",
    )
    print("{:<10}{:>8}{:>10}{:>6}{:>11}{:>9}{:>9}{:>10}  {}".format(*header))
    results = []
    for strategy in strategies:
        result = _run_strategy(strategy, stock, env, people, work)
        results.append(result)
        invariants = result["invariants"]
        print(
            f"{strategy:<10}{result['placed']:>8}{result['sold_out']:>10}{result['5xx']:>6}"
            f"{result['deadlocks']:>11}{result['p50_ms']:>9.0f}{result['p99_ms']:>9.0f}"
            f"{result['orders_per_s']:>10.1f}  "
            + (
                "hold"
                if invariants["hold"]
                else "BROKEN: " + ", ".join(k for k, v in invariants["checks"].items() if not v)
            )
        )
        for answer, count in result["answers"].items():
            print(f"{'':<10}{count:>5} x {answer}")
    settings = {
        "buyers": buyers,
        "stock_per_option": stock,
        "options": OPTIONS,
        "lines_per_order": "1-3 options in random order, 1 unit each",
        "legacy": "gunicorn 2 workers x 8 threads",
        "gateway": "1 worker; legacy read timeout 25 s, adaptive limit off",
        "database": DATABASE_URL.rsplit("/", 1)[-1],
        "deadlock_timeout": _setting(DATABASE_URL, "deadlock_timeout"),
    }
    write_result("timedeal", {"settings": settings, "results": results})
    shipped = next((r for r in results if r["strategy"] == "ordered"), None)
    if shipped is not None and not (
        shipped["invariants"]["hold"] and shipped["deadlocks"] == 0 and shipped["5xx"] == 0
    ):
        print("the shipped strategy deadlocked, answered a 5xx or broke an invariant", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
