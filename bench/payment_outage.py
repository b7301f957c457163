"""The payment provider outage, replayed: payments at a steady rate while provider A goes down, then
loses its answers, then comes back; with the distributor over two providers, and with A alone.

    .venv/bin/python bench/payment_outage.py [--quick] [--payments 2000] [--rate 40]
                                             [--modes distributor,single]

Per mode a fresh stack: the payment-provider simulators (``python -m services.payments.simulator``;
A, and B for the distributor) with new ledgers, and the payments service (1 worker, shipped
settings: provider timeout 2 s, status timeout 1 s asked 3 times, breaker at half of >= 5 charges
failed or slower than 1 s, open 5 s, reconciliation every 5 s) on a new SQLite database. The
client sends ``--payments`` payments (each its own Idempotency-Key, order and amount; signed as the
monolith signs them) at ``--rate`` per second, open loop, never retried. Provider A is:

  phase 1 (the first third of the payments)   ok
  phase 2 (the second third)                  down: every request a fast 503 not_processed
  phase 3 (the last third)                    timeout_after_charge: charges go through, the answers
                                              (and status queries) never come
  after the last payment is sent              ok again ("back")

  distributor   PAYMENTS_PROVIDERS=a,b (weights 1:1): the shipped distributor;
  single        PAYMENTS_PROVIDERS=a: what the incident looked like (one provider, same service).

Reported per mode and phase: payments approved in their answer (success rate), declined, pending,
503 (no provider), p50/p99 latency, failovers and their latency (a payment a provider certainly did
not take, charged by another). After A is back: the payments pending in their answer, how many
reconciliation settled and how long it took (from "back", and from the answer), any still pending
after 60 s. From the ledgers of both providers: charges per payment (live charges of its reference,
at most 1), double charges, duplicates refunded, and that every approved payment has exactly one
charge and nothing else has any. --quick: 600 payments. Writes bench/results/payment_outage.json and
payment_outage.png (logs and databases: var/bench-payments/); exits 1 if, with the distributor,
fewer than 99.9 % of phase 2 were approved, a reference was charged twice, or a payment was still
pending after the window. Needs matplotlib (`make bench-tools`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import sqlite3
import sys
import time
from collections import Counter
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._support import RESULTS, Needs, free_port, latency_summary, require, server_process, write_result

NEEDS = Needs(modules=("matplotlib",))
SECRET = "bench-identity-secret"  # noqa: S105 - a throwaway secret for local servers
VAR = ROOT / "var" / "bench-payments"
MODES = {"distributor": ("a", "b"), "single": ("a",)}
PHASES = ("ok", "down", "timeout_after_charge")
SETTLE_WINDOW_S = 60.0
CLIENT_TIMEOUT_S = 30.0
LOAD_SEED = 20261127


@dataclass
class Payment:
    n: int
    phase: int
    sent: float  # seconds from the start
    ms: float = 0.0
    http: int = 0  # 0: no answer
    status: str = ""  # approved | declined | pending | unavailable | error
    payment_id: str | None = None
    provider: str | None = None
    failed_over: bool = False
    settled: str | None = None  # after reconciliation
    settled_at: float | None = None  # seconds from the start, when the bench saw it settled
    attempts: list[dict[str, Any]] = field(default_factory=list)


def _failed_over(attempts: list[dict[str, Any]], provider: str | None) -> bool:
    """Charged by a provider after another one certainly did not take it."""
    return any(
        a["provider"] != provider and a["outcome"] in ("not_processed", "unclear", "not_found")
        for a in attempts
    )


async def _fault(client: Any, url: str, mode: str) -> None:
    response = await client.post(f"{url}/_sim/faults", json={"mode": mode})
    response.raise_for_status()


async def _run_load(
    service: str, pg_a: str, count: int, rate: float, marks: dict[str, float]
) -> tuple[list[Payment], float]:
    """Every payment at its time; A's faults at the thirds; A back after the last one is sent."""
    import httpx

    import identity

    rng = random.Random(LOAD_SEED)  # noqa: S311 - a reproducible load, not a secret
    limits = httpx.Limits(max_connections=1000, max_keepalive_connections=100)
    async with httpx.AsyncClient(timeout=CLIENT_TIMEOUT_S, limits=limits) as client:
        loop = asyncio.get_running_loop()

        async def pay(payment: Payment, amount: int) -> Payment:
            body = json.dumps({"order_id": payment.n + 1, "amount": amount, "currency": "KRW"}).encode()
            headers = identity.sign(
                SECRET,
                method="POST",
                path="/api/v1/payments",
                query="",
                body=body,
                user_id="1",
                scopes="payments",
                request_id=f"b-{payment.n}",
            )
            headers.update({"content-type": "application/json", "idempotency-key": f"bench-{payment.n}"})
            started = loop.time()
            try:
                response = await client.post(f"{service}/api/v1/payments", content=body, headers=headers)
            except httpx.HTTPError as error:
                payment.ms, payment.status = (loop.time() - started) * 1000, "error"
                payment.attempts = [{"error": type(error).__name__}]
                return payment
            payment.ms, payment.http = (loop.time() - started) * 1000, response.status_code
            data = response.json()
            if response.status_code == 201:
                payment.status, payment.payment_id = data["status"], data["id"]
                payment.provider, payment.attempts = data["provider"], data["attempts"]
                payment.failed_over = payment.status == "approved" and _failed_over(
                    payment.attempts, payment.provider
                )
            else:
                code = data.get("error", {}).get("code", "")
                payment.status = "unavailable" if code == "providers_unavailable" else "error"
            return payment

        start = loop.time()
        tasks = []
        for n in range(count):
            await asyncio.sleep(max(0.0, start + n / rate - loop.time()))
            phase = 3 * n // count
            if n and phase != 3 * (n - 1) // count:
                await _fault(client, pg_a, PHASES[phase])
                marks[PHASES[phase]] = loop.time() - start
            sent = Payment(n=n, phase=phase, sent=loop.time() - start)
            tasks.append(asyncio.create_task(pay(sent, rng.randint(1_000, 300_000))))
        await _fault(client, pg_a, "ok")
        marks["back"] = loop.time() - start
        payments = list(await asyncio.gather(*tasks))
        await _settle(client, service, payments, start, marks)
        return payments, start


async def _settle(client: Any, service: str, payments: list[Payment], start: float, marks: dict) -> None:
    """Poll the payments pending in their answer until reconciliation settles them (or the window ends)."""
    import identity

    loop = asyncio.get_running_loop()
    for payment in payments:
        if payment.status in ("approved", "declined"):
            payment.settled, payment.settled_at = payment.status, payment.sent + payment.ms / 1000
    waiting = [p for p in payments if p.status == "pending"]
    deadline = start + marks["back"] + SETTLE_WINDOW_S
    while waiting and loop.time() < deadline:
        for payment in list(waiting):
            path = f"/api/v1/payments/{payment.payment_id}"
            headers = identity.sign(
                SECRET,
                method="GET",
                path=path,
                query="",
                body=b"",
                user_id="1",
                scopes="payments",
                request_id="b",
            )
            data = (await client.get(f"{service}{path}", headers=headers)).json()
            if data["status"] != "pending":
                payment.settled, payment.settled_at = data["status"], loop.time() - start
                payment.provider = data["provider"]
                waiting.remove(payment)
        await asyncio.sleep(0.2)


def _ledgers(urls: dict[str, str]) -> dict[str, list[dict[str, Any]]]:
    import httpx

    return {name: httpx.get(f"{url}/_sim/ledger", timeout=10).json()["charges"] for name, url in urls.items()}


def _stored(database: Path) -> dict[str, tuple[str, str | None]]:
    with sqlite3.connect(database) as db:
        return {
            row[0]: (row[1], row[2])
            for row in db.execute("SELECT id, status, provider FROM payments_payment")
        }


def _money(payments: list[Payment], ledgers: dict[str, list[dict[str, Any]]], stored: dict) -> dict[str, Any]:
    """Charges per reference across every ledger, against what the payments service recorded."""
    live: Counter[str] = Counter()
    refunded = 0
    for charges in ledgers.values():
        for charge in charges:
            live[charge["reference"]] += charge["status"] == "approved"
            refunded += charge["status"] == "refunded"
    approved = {pid for pid, (status, _) in stored.items() if status == "approved"}
    return {
        "charges_per_payment_max": max((live[pid] for pid in stored), default=0),
        "double_charges": sum(count > 1 for count in live.values()),
        "duplicates_refunded": refunded,
        "approved_without_one_charge": sum(live[pid] != 1 for pid in approved),
        "charged_but_not_approved": sum(count > 0 for pid, count in live.items() if pid not in approved),
        "payments_in_the_database": len(stored),
        "answered_201": sum(p.http == 201 for p in payments),
    }


def _phase_report(payments: list[Payment]) -> dict[str, Any]:
    counts = Counter(p.status for p in payments)
    failovers = [p.ms for p in payments if p.failed_over]
    direct = [p.ms for p in payments if p.status == "approved" and not p.failed_over]
    return {
        "payments": len(payments),
        "approved": counts["approved"],
        "declined": counts["declined"],
        "pending": counts["pending"],
        "unavailable_503": counts["unavailable"],
        "errors": counts["error"],
        "success_rate": counts["approved"] / len(payments) if payments else 0.0,
        "latency": {k: round(v, 1) for k, v in latency_summary([p.ms for p in payments]).items()},
        "failovers": len(failovers),
        "failover_latency": {k: round(v, 1) for k, v in latency_summary(failovers).items()}
        if failovers
        else None,
        "direct_p50_ms": round(latency_summary(direct)["p50_ms"], 1) if direct else None,
        "eventually_approved": sum(p.settled == "approved" for p in payments),
    }


def _per_second(payments: list[Payment]) -> list[dict[str, Any]]:
    seconds = int(max(p.sent for p in payments)) + 1
    rows = [Counter() for _ in range(seconds)]  # type: ignore[var-annotated]
    latencies: list[list[float]] = [[] for _ in range(seconds)]
    for payment in payments:
        rows[int(payment.sent)][payment.status] += 1
        latencies[int(payment.sent)].append(payment.ms)
    return [
        {
            "second": s,
            **{k: rows[s][k] for k in ("approved", "declined", "pending", "unavailable", "error")},
            "p99_ms": latency_summary(latencies[s])["p99_ms"] if latencies[s] else 0.0,
        }
        for s in range(seconds)
    ]


def _run_mode(mode: str, count: int, rate: float, work: Path) -> dict[str, Any]:
    work = work / mode
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    names = MODES[mode]
    ports = {name: free_port() for name in names}
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    service_port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{work / 'payments.sqlite3'}",
        "IDENTITY_SECRET": SECRET,
        "PAYMENTS_URL": f"http://127.0.0.1:{service_port}",
        "PAYMENTS_PROVIDERS": ",".join(f"{name}={url}" for name, url in urls.items()),
        "LOG_LEVEL": "warning",
    }
    marks: dict[str, float] = {}
    with ExitStack() as stack:
        for name, port in ports.items():
            command = [
                sys.executable,
                "-m",
                "services.payments.simulator",
                "--name",
                name,
                "--port",
                str(port),
            ]
            command += ["--ledger", str(work / f"pg-{name}.sqlite3")]
            stack.enter_context(server_process(command, env, port, work / f"pg-{name}.log"))
        stack.enter_context(
            server_process(
                [sys.executable, "-m", "services.payments"], env, service_port, work / "payments.log"
            )
        )
        started = time.monotonic()
        payments, _ = asyncio.run(_run_load(env["PAYMENTS_URL"], urls["a"], count, rate, marks))
        seconds = time.monotonic() - started
        ledgers = _ledgers(urls)
    stored = _stored(work / "payments.sqlite3")
    pending = [p for p in payments if p.status == "pending"]
    settled = [p for p in pending if p.settled in ("approved", "declined")]
    back = marks["back"]
    alarms = sum("ALARM" in line for line in (work / "payments.log").read_text(errors="replace").splitlines())
    return {
        "mode": mode,
        "providers": list(names),
        "marks_s": {k: round(v, 2) for k, v in marks.items()},
        "seconds": round(seconds, 1),
        "phases": {PHASES[i]: _phase_report([p for p in payments if p.phase == i]) for i in range(3)},
        "reconciliation": {
            "pending_in_answer": len(pending),
            "settled": len(settled),
            "settled_approved": sum(p.settled == "approved" for p in settled),
            "settled_declined": sum(p.settled == "declined" for p in settled),
            "still_pending": len(pending) - len(settled),
            "last_settled_after_back_s": round(max((p.settled_at - back for p in settled), default=0.0), 2)
            if settled
            else None,
            "settle_after_answer_s": (
                {
                    k.replace("_ms", "_s"): round(v / 1000, 2)
                    for k, v in latency_summary(
                        [(p.settled_at - (p.sent + p.ms / 1000)) * 1000 for p in settled if p.settled_at]
                    ).items()
                }
                if settled
                else None
            ),
        },
        "money": {**_money(payments, ledgers, stored), "alarm_lines": alarms},
        "per_second": _per_second(payments),
        "failover_examples": [p.attempts for p in payments if p.failed_over][:3],
        "samples": [asdict(p) for p in payments[:: max(1, len(payments) // 50)]],
    }


def _acceptable(result: dict[str, Any]) -> list[str]:
    problems = []
    down = result["phases"]["down"]
    if down["success_rate"] < 0.999:
        problems.append(f"A down: {100 * down['success_rate']:.2f} % approved (< 99.9 %)")
    money = result["money"]
    if money["charges_per_payment_max"] > 1 or money["double_charges"]:
        problems.append(f"double charges: {money['double_charges']}")
    if money["approved_without_one_charge"] or money["charged_but_not_approved"]:
        problems.append("ledgers disagree with the payments recorded")
    if result["reconciliation"]["still_pending"]:
        problems.append(
            f"{result['reconciliation']['still_pending']} still pending after {SETTLE_WINDOW_S:.0f} s"
        )
    return problems


def markdown(summary: dict[str, Any]) -> str:
    """One row per mode and phase; then reconciliation and the ledgers per mode."""
    rows = [
        "| mode | provider A | payments | approved | pending | 503 | p50 ms | p99 ms | max ms "
        "| failovers (p50/p99 ms) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for result in summary["results"]:
        for phase, report in result["phases"].items():
            failover = report["failover_latency"]
            rows.append(
                f"| {result['mode']} | {phase} | {report['payments']} | "
                f"{100 * report['success_rate']:.1f} % | {report['pending']} | {report['unavailable_503']} | "
                f"{report['latency']['p50_ms']:.0f} | {report['latency']['p99_ms']:.0f} | "
                f"{report['latency']['max_ms']:,.0f} | "
                + (
                    f"{report['failovers']} ({failover['p50_ms']:.0f}/{failover['p99_ms']:.0f})"
                    if failover
                    else "0"
                )
                + " |"
            )
    rows.append("")
    for result in summary["results"]:
        rec, money = result["reconciliation"], result["money"]
        rows.append(
            f"- {result['mode']}: {rec['pending_in_answer']} pending in their answer, {rec['settled']} "
            f"settled by reconciliation ({rec['settled_approved']} approved, {rec['settled_declined']} "
            f"declined), the last {rec['last_settled_after_back_s']} s after A was back, "
            f"{rec['still_pending']} still pending; charges per payment at most "
            f"{money['charges_per_payment_max']}, {money['double_charges']} double charges, "
            f"{money['duplicates_refunded']} duplicates refunded"
        )
    return "\n".join(rows)


def chart(summary: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = summary["results"]
    figure, axes = plt.subplots(len(results), 2, figsize=(15, 3.8 * len(results)), squeeze=False)
    colors = {
        "approved": "tab:green",
        "declined": "tab:gray",
        "pending": "tab:orange",
        "unavailable": "tab:red",
        "error": "tab:purple",
    }
    for row, result in zip(axes, results, strict=True):
        seconds = [r["second"] for r in result["per_second"]]
        bottom = [0.0] * len(seconds)
        for key, color in colors.items():
            values = [r[key] for r in result["per_second"]]
            row[0].bar(seconds, values, bottom=bottom, width=1.0, align="edge", color=color, label=key)
            bottom = [b + v for b, v in zip(bottom, values, strict=True)]
        row[0].set_ylabel("payments / s (by answer)")
        row[0].set_title(
            f"{result['mode']} (providers {', '.join(result['providers'])}): "
            + ", ".join(f"{p} {100 * r['success_rate']:.1f} %" for p, r in result["phases"].items()),
            fontsize=10,
            loc="left",
        )
        row[1].plot(
            seconds, [max(r["p99_ms"], 1) for r in result["per_second"]], color="tab:blue", label="p99"
        )
        row[1].set_yscale("log")
        row[1].set_ylabel("p99 latency, ms")
        rec = result["reconciliation"]
        row[1].set_title(
            f"pending {rec['pending_in_answer']}, settled {rec['settled']} "
            f"(last {rec['last_settled_after_back_s']} s after A back); "
            f"max charges per payment {result['money']['charges_per_payment_max']}",
            fontsize=10,
            loc="left",
        )
        for axis in row:
            for name, at in result["marks_s"].items():
                axis.axvline(at, color="black", linestyle="--", linewidth=0.8)
                axis.text(at, axis.get_ylim()[1], f" A {name}", fontsize=7, va="top")
            axis.set_xlabel("seconds (by when sent)")
        row[0].legend(loc="upper right", fontsize=7)
    figure.suptitle("Payment provider A: ok, down, answers lost (timeout_after_charge), back", fontsize=11)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="600 payments")
    parser.add_argument("--payments", type=int, default=None, help="default 2000 (600 with --quick)")
    parser.add_argument("--rate", type=float, default=40.0, help="payments per second (default 40)")
    parser.add_argument("--modes", default="distributor,single", help="distributor, single or both (default)")
    options = parser.parse_args()
    count = options.payments if options.payments is not None else (600 if options.quick else 2000)
    modes = [m.strip() for m in options.modes.split(",") if m.strip()]
    if count < 30 or not 1 <= options.rate <= 500:
        parser.error("--payments must be at least 30, --rate 1..500")
    if not modes or not set(modes) <= set(MODES):
        parser.error("--modes: distributor, single or both")
    require(NEEDS)
    results = []
    header = ("mode", "provider A", "payments", "approved", "pending", "503", "p50 ms", "p99 ms", "max ms")
    print("{:<12}{:<22}{:>9}{:>10}{:>9}{:>6}{:>8}{:>9}{:>8}{:>11}".format(*header, "failovers"))
    for mode in modes:
        result = _run_mode(mode, count, options.rate, VAR)
        results.append(result)
        for phase, report in result["phases"].items():
            print(
                f"{mode:<12}{phase:<22}{report['payments']:>9}{100 * report['success_rate']:>9.1f}%"
                f"{report['pending']:>9}{report['unavailable_503']:>6}{report['latency']['p50_ms']:>8.0f}"
                f"{report['latency']['p99_ms']:>9.0f}{report['latency']['max_ms']:>8.0f}{report['failovers']:>11}"
            )
        rec, money = result["reconciliation"], result["money"]
        print(
            f"{'':<12}reconciliation: {rec['pending_in_answer']} pending, {rec['settled']} settled "
            f"(last {rec['last_settled_after_back_s']} s after A back), {rec['still_pending']} left; "
            f"ledgers: max {money['charges_per_payment_max']} charge per payment, "
            f"{money['double_charges']} double, {money['duplicates_refunded']} refunded"
        )
    summary = {
        "settings": {
            "payments": count,
            "rate_per_s": options.rate,
            "phases": "A ok / down / timeout_after_charge, a third of the payments each; then A back",
            "service": "1 worker, shipped PAYMENTS_* defaults, SQLite",
            "settle_window_s": SETTLE_WINDOW_S,
        },
        "results": results,
    }
    write_result("payment_outage", summary)
    chart(summary, RESULTS / "payment_outage.png")
    print(f"wrote {RESULTS / 'payment_outage.json'} and payment_outage.png")
    shipped = next((r for r in results if r["mode"] == "distributor"), None)
    problems = _acceptable(shipped) if shipped is not None else []
    for problem in problems:
        print(f"distributor: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
