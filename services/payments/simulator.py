"""A payment provider (PG) simulator with its own ledger and faults injected at run time.

    python -m services.payments.simulator --name a --port 8101 [--host 127.0.0.1]
                                          [--ledger var/pg-a.sqlite3] [--decline-over 10000000]

The provider API (what ``services/payments/providers.py`` speaks)::

    POST /v1/charges {"reference", "amount", "currency"}
         201 {"reference", "status": "approved" | "declined", "amount", "currency", "at"}
         200 the same for a reference already charged (idempotent: never a second charge);
         409 reference_reused for a known reference with another amount or currency
    GET  /v1/charges/{reference}         200 the charge ("processing" while it is being charged,
                                         "refunded" once refunded) | 404 {"code": "not_found"}
    POST /v1/charges/{reference}/refund  200 {"reference", "status": "refunded", …} (again: the same)

An amount above ``--decline-over`` is declined (a card over its limit); everything else is approved.
The ledger is a SQLite file: a reference is recorded (``processing``) as soon as a charge arrives.

Control (never faulted)::

    POST /_sim/faults {"mode", "rate": 0.0-1.0 (1.0), "delay_ms": N (per mode)}   GET /_sim/faults
    GET  /_sim/ledger   {"name", "charges": [{"reference", "amount", "currency", "status", "at", …}]}
    GET  /health

Each request to the provider API meets the fault with probability ``rate``:

- ``ok``: no fault;
- ``down``: 503 ``not_processed`` at once: nothing is done (the explicit "not processed");
- ``error``: a charge gets a 500 before anything is done (the caller cannot know that); status and
  refund requests are answered normally, so the caller can find out;
- ``slow``: the answer comes ``delay_ms`` (1500) late; a charge is recorded first, ``processing``
  until then;
- ``timeout_after_charge``: a charge is recorded and approved, then the answer is held ``delay_ms``
  (10000, longer than any caller waits) and is a 504; a status or refund request is held the same
  way (the provider is wedged behind its ledger);
- ``flaky``: one of, at random: 503 ``not_processed``; 500 before charging; 500 after charging; the
  answer held after charging (as ``timeout_after_charge``). Status and refund requests get a 500.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from strictjson import BodyRejected, decode_object

MODES = ("ok", "down", "error", "slow", "timeout_after_charge", "flaky")
DEFAULT_DELAY_MS = {"slow": 1500, "timeout_after_charge": 10_000, "flaky": 10_000}
FLAKY_CHARGE = ("not_processed", "error_before", "error_after", "held_after")
MAX_BODY = 64 * 1024


@dataclass
class Faults:
    mode: str = "ok"
    rate: float = 1.0
    delay_ms: int = 0


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{int(time.time() * 1000) % 1000:03d}Z"


class Ledger:
    """The provider's own record of charges, one row per merchant reference."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS charges (reference TEXT PRIMARY KEY, amount INTEGER NOT NULL, "
            "currency TEXT NOT NULL, status TEXT NOT NULL, at TEXT NOT NULL, refunded_at TEXT)"
        )

    def get(self, reference: str) -> dict[str, Any] | None:
        row = self.db.execute("SELECT * FROM charges WHERE reference = ?", (reference,)).fetchone()
        return _charge_json(row) if row is not None else None

    def receive(self, reference: str, amount: int, currency: str) -> None:
        self.db.execute(
            "INSERT INTO charges (reference, amount, currency, status, at) VALUES (?, ?, ?, 'processing', ?)",
            (reference, amount, currency, _now()),
        )

    def settle(self, reference: str, status: str) -> None:
        self.db.execute(
            "UPDATE charges SET status = ?, at = ? WHERE reference = ?", (status, _now(), reference)
        )

    def refund(self, reference: str) -> None:
        self.db.execute(
            "UPDATE charges SET refunded_at = ? WHERE reference = ? AND refunded_at IS NULL",
            (_now(), reference),
        )

    def all(self) -> list[dict[str, Any]]:
        return [_charge_json(row) for row in self.db.execute("SELECT * FROM charges ORDER BY rowid")]


def _charge_json(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "reference": row["reference"],
        "status": "refunded" if row["refunded_at"] else row["status"],
        "amount": row["amount"],
        "currency": row["currency"],
        "at": row["at"],
        "refunded_at": row["refunded_at"],
    }


class Simulator:
    def __init__(self, name: str, ledger: Ledger, decline_over: int, seed: int | None = None) -> None:
        self.name = name
        self.ledger = ledger
        self.decline_over = decline_over
        self.faults = Faults()
        self.rng = random.Random(seed)  # noqa: S311 - fault injection, not a secret

    def fault(self) -> str:
        """The fault this request meets: the mode with probability ``rate``, else ``ok``."""
        if self.faults.mode == "ok" or self.rng.random() >= self.faults.rate:
            return "ok"
        return self.faults.mode

    async def hold(self) -> None:
        await asyncio.sleep(self.faults.delay_ms / 1000)


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"code": code, "message": message}, status_code=status)


def _not_processed() -> JSONResponse:
    return _error(503, "not_processed", "The provider is unavailable; the request was not processed.")


def _internal() -> JSONResponse:
    return _error(500, "internal_error", "Internal error.")


def _held() -> JSONResponse:
    return _error(504, "gateway_timeout", "Upstream timeout.")


def sim_of(request: Request) -> Simulator:
    simulator: Simulator = request.app.state.simulator
    return simulator


async def _object(request: Request) -> dict[str, Any] | None:
    body = await request.body()
    if len(body) > MAX_BODY:
        return None
    try:
        return decode_object(body)
    except BodyRejected:
        return None


async def charge(request: Request) -> Response:
    sim = sim_of(request)
    fault = sim.fault()
    flaky = sim.rng.choice(FLAKY_CHARGE) if fault == "flaky" else ""
    if fault == "down" or flaky == "not_processed":
        return _not_processed()
    if fault == "error" or flaky == "error_before":
        return _internal()
    data = await _object(request)
    reference, amount, currency = (
        (data or {}).get("reference"),
        (data or {}).get("amount"),
        (data or {}).get("currency"),
    )
    if not (
        isinstance(reference, str)
        and 1 <= len(reference) <= 64
        and type(amount) is int
        and amount > 0
        and isinstance(currency, str)
    ):
        return _error(400, "invalid_request", "reference, amount and currency are required.")
    existing = sim.ledger.get(reference)
    if existing is not None:
        if (existing["amount"], existing["currency"]) != (amount, currency):
            return _error(409, "reference_reused", "This reference was charged with another amount.")
        return JSONResponse(existing, status_code=200)
    sim.ledger.receive(reference, amount, currency)
    if fault == "slow":
        await sim.hold()
    sim.ledger.settle(reference, "declined" if amount > sim.decline_over else "approved")
    if fault == "timeout_after_charge" or flaky == "held_after":
        await sim.hold()
        return _held()
    if flaky == "error_after":
        return _internal()
    return JSONResponse(sim.ledger.get(reference), status_code=201)


async def _faulted_lookup(sim: Simulator) -> Response | None:
    """What a status or refund request gets from the current fault, if anything but a normal answer."""
    fault = sim.fault()
    if fault == "down":
        return _not_processed()
    if fault == "flaky":
        return _internal()
    if fault == "timeout_after_charge":
        await sim.hold()
        return _held()
    if fault == "slow":
        await sim.hold()
    return None


async def charge_status(request: Request) -> Response:
    sim = sim_of(request)
    faulted = await _faulted_lookup(sim)
    if faulted is not None:
        return faulted
    found = sim.ledger.get(request.path_params["reference"])
    if found is None:
        return _error(404, "not_found", "No charge with this reference.")
    return JSONResponse(found)


async def refund(request: Request) -> Response:
    sim = sim_of(request)
    faulted = await _faulted_lookup(sim)
    if faulted is not None:
        return faulted
    reference = request.path_params["reference"]
    found = sim.ledger.get(reference)
    if found is None:
        return _error(404, "not_found", "No charge with this reference.")
    if found["status"] not in ("approved", "refunded"):
        return _error(409, "not_refundable", f"The charge is {found['status']}.")
    sim.ledger.refund(reference)
    return JSONResponse(sim.ledger.get(reference))


async def faults(request: Request) -> Response:
    sim = sim_of(request)
    if request.method == "POST":
        data = await _object(request)
        if data is None or data.get("mode") not in MODES:
            return _error(400, "bad_request", f"mode must be one of: {', '.join(MODES)}")
        mode = str(data["mode"])
        rate, delay = data.get("rate", 1.0), data.get("delay_ms", DEFAULT_DELAY_MS.get(mode, 0))
        if type(rate) not in (int, float) or not 0.0 <= rate <= 1.0:
            return _error(400, "bad_request", "rate must be a number from 0.0 to 1.0")
        if type(delay) is not int or not 0 <= delay <= 600_000:
            return _error(400, "bad_request", "delay_ms must be an integer from 0 to 600000")
        sim.faults = Faults(mode=mode, rate=float(rate), delay_ms=delay)
    return JSONResponse({"name": sim.name, **vars(sim.faults)})


async def ledger(request: Request) -> Response:
    sim = sim_of(request)
    return JSONResponse({"name": sim.name, "charges": sim.ledger.all()})


async def health(request: Request) -> Response:
    return JSONResponse({"status": "ok", "name": sim_of(request).name})


def create_app(simulator: Simulator) -> Starlette:
    app = Starlette(
        routes=[
            Route("/v1/charges", charge, methods=["POST"]),
            Route("/v1/charges/{reference}", charge_status, methods=["GET"]),
            Route("/v1/charges/{reference}/refund", refund, methods=["POST"]),
            Route("/_sim/faults", faults, methods=["GET", "POST"]),
            Route("/_sim/ledger", ledger, methods=["GET"]),
            Route("/health", health, methods=["GET"]),
        ]
    )
    app.state.simulator = simulator
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--name", required=True, help="the provider's name (a, b, …)")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--ledger", type=Path, help="SQLite file (default: $VAR_DIR/pg-<name>.sqlite3)")
    parser.add_argument("--decline-over", type=int, default=10_000_000, help="declines larger amounts")
    options = parser.parse_args(argv)
    var_dir = Path(os.environ.get("VAR_DIR", Path(__file__).resolve().parents[2] / "var"))
    path = options.ledger or var_dir / f"pg-{options.name}.sqlite3"
    simulator = Simulator(options.name, Ledger(path), options.decline_over)
    uvicorn.run(
        create_app(simulator),
        host=options.host,
        port=options.port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=1,
    )


if __name__ == "__main__":
    main()
