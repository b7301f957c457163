"""The payments service against real provider simulators (processes): one charge per payment, failover
only when a provider certainly did not charge, pending and reconciliation when an answer is lost,
breakers per provider, and bad input refused before anything is charged."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.conftest import require_service
from tests.support.payments import (
    PaymentsClient,
    Simulator,
    payments_env,
    payments_service,
    reconcile,
    simulator,
)
from tests.support.servers import free_port
from tests.support.waiting import eventually

SECRET = "payments-test-secret"
# Short timeouts so that a lost answer costs about a second: charge 0.8 s, each status 0.2 s (asked twice).
FAST = {
    "connect_timeout": "0.5",
    "provider_timeout": "0.8",
    "status_timeout": "0.2",
    "status_retries": "1",
    "slow_ms": "250",
    "breaker_open_seconds": "0.5",
    "audit_seconds": "0",
}
HELD_MS = 1000  # a held answer: longer than the charge and status timeouts


@dataclass(frozen=True)
class Stack:
    client: PaymentsClient
    a: Simulator
    b: Simulator
    env: dict[str, str]

    def charges(self, reference: str) -> int:
        return self.a.charged(reference) + self.b.charged(reference)

    def ledger_size(self) -> int:
        return len(self.a.ledger()) + len(self.b.ledger())


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    work = tmp_path_factory.mktemp("payments")
    with simulator("a", work) as a, simulator("b", work) as b:
        env = payments_env(f"sqlite:///{work / 'payments.sqlite3'}", f"a={a.url},b={b.url}", SECRET, **FAST)
        with payments_service(env, work / "payments.log") as url:
            yield Stack(PaymentsClient(url, SECRET), a, b, env)


def _body(amount: int = 1000, order_id: int = 1) -> dict[str, Any]:
    return {"order_id": order_id, "amount": amount, "currency": "KRW"}


def _pay(stack: Stack, **body: Any) -> dict[str, Any]:
    response = stack.client.pay(_body(**body), str(uuid.uuid4()))
    assert response.status_code == 201, response.text
    payment: dict[str, Any] = response.json()
    return payment


@pytest.fixture(autouse=True)
def healthy(stack: Stack) -> Stack:
    """Both providers answer and both breakers are closed (traffic lets an open one probe)."""
    stack.a.faults("ok")
    stack.b.faults("ok")

    def closed() -> bool:
        if set(stack.client.breakers().values()) == {"closed"}:
            return True
        _pay(stack)
        return False

    assert eventually(closed, timeout=15, interval=0.05), stack.client.breakers()
    return stack


def _steps(payment: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [(a["provider"], a["step"], a["outcome"]) for a in payment["attempts"]]


# --- one payment, one charge -------------------------------------------------------------------------


def test_a_payment_is_charged_once_and_its_key_answers_the_same_payment(stack):
    key, body = str(uuid.uuid4()), _body(12000, order_id=7)
    first = stack.client.pay(body, key)
    assert first.status_code == 201, first.text
    payment = first.json()
    assert (payment["status"], payment["order_id"], payment["amount"]) == ("approved", 7, 12000)
    assert payment["provider"] in {"a", "b"} and payment["settled_at"]
    assert first.headers["location"] == f"/api/v1/payments/{payment['id']}"
    assert "idempotent-replayed" not in first.headers

    again = stack.client.pay(body, key)
    assert again.status_code == 201
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == payment
    assert stack.client.get(payment["id"]).json() == payment
    assert stack.charges(payment["id"]) == 1


def test_the_same_key_with_another_body_is_a_422_and_charges_nothing(stack):
    key = str(uuid.uuid4())
    payment = stack.client.pay(_body(1000), key).json()
    before = stack.ledger_size()
    response = stack.client.pay(_body(2000), key)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "idempotency_key_reused"
    assert stack.ledger_size() == before
    assert stack.charges(payment["id"]) == 1


def test_the_same_key_sent_twice_at_once_is_one_charge(stack):
    # Slow providers (but faster than PAYMENTS_SLOW_MS): the second request arrives while the first charges.
    stack.a.faults("slow", delay_ms=150)
    stack.b.faults("slow", delay_ms=150)
    key, body = str(uuid.uuid4()), _body(3300)
    with ThreadPoolExecutor(2) as pool:
        responses = list(pool.map(lambda _: stack.client.pay(body, key), range(2)))
    assert [r.status_code for r in responses] == [201, 201]
    first, second = (r.json() for r in responses)
    assert first == second and first["status"] == "approved"
    assert sorted(r.headers.get("idempotent-replayed", "") for r in responses) == ["", "true"]
    assert stack.charges(first["id"]) == 1


def test_an_amount_over_the_card_limit_is_declined_and_not_charged(stack):
    payment = _pay(stack, amount=20_000_000)
    assert payment["status"] == "declined" and payment["provider"] in {"a", "b"}
    assert stack.charges(payment["id"]) == 0


# --- bad input ---------------------------------------------------------------------------------------

PADDED = json.dumps({**_body(), "note": "x" * 1_000_000}).encode()


@pytest.mark.parametrize(
    ("body", "key", "field"),
    [
        (_body(), None, "Idempotency-Key"),
        (_body(), "not a key", "Idempotency-Key"),
        ({**_body(), "amount": -1000}, "k", "amount"),
        ({**_body(), "amount": 0}, "k", "amount"),
        ({**_body(), "amount": 10.5}, "k", "amount"),
        ({**_body(), "amount": "1000"}, "k", "amount"),
        ({**_body(), "amount": True}, "k", "amount"),
        ({**_body(), "currency": "XXX"}, "k", "currency"),
        ({"order_id": 1, "amount": 1000}, "k", "currency"),
        ({**_body(), "order_id": 0}, "k", "order_id"),
        (PADDED, "k", "note"),
    ],
    ids=[
        "no-key",
        "bad-key",
        "negative",
        "zero",
        "float",
        "string",
        "bool",
        "unknown-currency",
        "no-currency",
        "order-0",
        "1MB-body",
    ],
)
def test_bad_input_is_a_400_envelope_and_charges_nothing(stack, body, key, field):
    before = stack.ledger_size()
    response = stack.client.pay(body, str(uuid.uuid4()) if key == "k" else key)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error" and field in error["fields"]
    assert error["request_id"] == response.headers["x-request-id"]
    assert stack.ledger_size() == before


@pytest.mark.parametrize(
    ("raw", "content_type", "status", "code"),
    [
        (b"[1, 2]", "application/json", 400, "bad_request"),
        (b'{"amount": 1, "amount": 2}', "application/json", 400, "bad_request"),
        (b"order_id=1", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
        (b"{" + b" " * (1024 * 1024) + b"}", "application/json", 413, "payload_too_large"),
    ],
    ids=["array", "duplicate-key", "form", "over-1MiB"],
)
def test_a_body_that_is_not_one_small_json_object_is_refused(stack, raw, content_type, status, code):
    before = stack.ledger_size()
    response = stack.client.pay(raw, str(uuid.uuid4()), content_type=content_type)
    assert (response.status_code, response.json()["error"]["code"]) == (status, code)
    assert stack.ledger_size() == before


def test_only_a_caller_with_the_payments_scope_may_pay(stack):
    before = stack.ledger_size()
    unsigned = stack.client.pay(_body(), str(uuid.uuid4()), sign=False)
    assert unsigned.status_code == 401
    user = stack.client.pay(_body(), str(uuid.uuid4()), scopes="user")
    assert user.status_code == 403
    assert user.json()["error"]["code"] == "forbidden"
    assert httpx.get(f"{stack.client.url}/api/v1/payments/pay_0", timeout=5).status_code == 401
    assert stack.client.get("pay_0").status_code == 404
    assert stack.ledger_size() == before


# --- faults ------------------------------------------------------------------------------------------


def _until(stack: Stack, wanted: Any, *, timeout: float = 15) -> list[dict[str, Any]]:
    """Payments, one after another, until ``wanted(payments so far)``; all of them."""
    made: list[dict[str, Any]] = []

    def check() -> bool:
        made.append(_pay(stack))
        return bool(wanted(made))

    assert eventually(check, timeout=timeout, interval=0), [_steps(p) for p in made]
    return made


def test_a_provider_that_is_down_is_failed_over_and_its_breaker_opens_then_closes(stack):
    stack.a.faults("down")
    made = _until(stack, lambda made: stack.client.breakers()["a"] == "open" and len(made) >= 3)
    assert {p["status"] for p in made} == {"approved"}
    assert {p["provider"] for p in made} == {"b"}
    assert sum(stack.a.charged(p["id"]) for p in made) == 0
    assert any(_steps(p)[:1] == [("a", "charge", "not_processed")] for p in made)
    # Open: A is not even tried (a payment that meets it first skips it).
    skipped = _until(stack, lambda made: _steps(made[-1])[0] == ("a", "skipped", "breaker_open"))
    assert {p["provider"] for p in skipped} == {"b"}

    stack.a.faults("ok")
    probed = _until(stack, lambda made: stack.client.breakers()["a"] == "closed")
    assert probed[-1]["status"] == "approved"
    assert eventually(lambda: _pay(stack)["provider"] == "a", timeout=5, interval=0)


def test_a_refused_connection_is_failed_over_and_with_no_provider_left_a_retry_runs_again(stack, tmp_path):
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens: every connection is refused
    env = payments_env(f"sqlite:///{tmp_path / 'p.sqlite3'}", f"gone={dead},b={stack.b.url}", SECRET, **FAST)
    with payments_service(env, tmp_path / "payments.log") as url:
        local = Stack(PaymentsClient(url, SECRET), stack.a, stack.b, env)
        made = _until(local, lambda made: any(_steps(p)[0][0] == "gone" for p in made))
        assert {(p["status"], p["provider"]) for p in made} == {("approved", "b")}
        assert made[-1]["attempts"][0]["detail"] == "ConnectError"

        stack.b.faults("down")
        key, body = str(uuid.uuid4()), _body(4400)
        refused = local.client.pay(body, key)
        assert refused.status_code == 503
        assert refused.json()["error"]["code"] == "providers_unavailable"
        assert refused.headers["retry-after"] == "1"
        stack.b.faults("ok")
        retried = local.client.pay(body, key)
        assert retried.status_code == 201 and "idempotent-replayed" not in retried.headers
        assert retried.json()["status"] == "approved"
        assert stack.charges(retried.json()["id"]) == 1


def test_an_error_answer_is_resolved_by_asking_the_provider_then_failed_over(stack):
    stack.a.faults("error")
    failed_over = [("a", "charge", "unclear"), ("a", "status", "not_found"), ("b", "charge", "approved")]
    made = _until(stack, lambda made: _steps(made[-1]) == failed_over)
    assert {(p["status"], p["provider"]) for p in made} == {("approved", "b")}
    assert made[-1]["attempts"][0]["detail"] == "HTTP 500"
    assert sum(stack.a.charged(p["id"]) for p in made) == 0


def test_a_slow_provider_opens_its_breaker_on_latency(stack):
    stack.a.faults("slow", delay_ms=300)  # answered within the timeout, but slower than 250 ms
    made = _until(stack, lambda made: stack.client.breakers()["a"] == "open")
    assert {p["status"] for p in made} == {"approved"}
    assert any(p["provider"] == "a" for p in made)
    assert all(stack.charges(p["id"]) == 1 for p in made)


def _lost_answer(stack: Stack) -> dict[str, Any]:
    """A payment whose charge went through at A while A's answers are lost (B refuses: not tried)."""
    stack.b.faults("down")
    stack.a.faults("timeout_after_charge", delay_ms=HELD_MS)
    payment = _pay(stack, amount=5500)
    assert (payment["status"], payment["provider"], payment["settled_at"]) == ("pending", "a", None)
    assert ("a", "charge", "unclear") in _steps(payment)
    assert _steps(payment)[-1] == ("a", "status", "unknown")
    assert (stack.a.charged(payment["id"]), stack.b.charged(payment["id"])) == (1, 0)
    return payment


def test_a_lost_answer_stays_pending_until_reconciliation_settles_it_with_one_charge(stack):
    payment = _lost_answer(stack)
    _, summary = reconcile(stack.env)  # A still wedged: nothing can be learned
    assert summary["still_pending"] >= 1
    assert stack.client.get(payment["id"]).json()["status"] == "pending"

    stack.a.faults("ok")
    stack.b.faults("ok")
    code, summary = reconcile(stack.env)
    assert code == 0 and payment["id"] in summary["settled_ids"]
    settled = stack.client.get(payment["id"]).json()
    assert (settled["status"], settled["provider"]) == ("approved", "a")
    assert settled["settled_at"] is not None
    assert stack.charges(payment["id"]) == 1


def test_a_duplicate_charge_is_refunded_by_reconciliation_and_raised_as_an_alarm(stack):
    payment = _lost_answer(stack)
    stack.a.faults("ok")
    stack.b.faults("ok")
    # What the failover rule prevents: another provider charging the same reference.
    body = {"reference": payment["id"], "amount": payment["amount"], "currency": "KRW"}
    assert httpx.post(f"{stack.b.url}/v1/charges", json=body, timeout=5).status_code == 201
    assert stack.charges(payment["id"]) == 2

    code, summary = reconcile(stack.env, cli=True)  # the command ops run: it exits 1 on an alarm
    assert code == 1 and summary["duplicates_refunded"] == 1
    settled = stack.client.get(payment["id"]).json()
    assert (settled["status"], settled["provider"]) == ("approved", "a")
    assert (stack.a.charged(payment["id"]), stack.b.charged(payment["id"])) == (1, 0)
    assert [c["status"] for c in stack.b.ledger() if c["reference"] == payment["id"]] == ["refunded"]


def test_a_flaky_provider_never_charges_a_payment_twice_and_reconciliation_settles_all(stack):
    stack.a.faults("flaky", rate=1.0, delay_ms=HELD_MS)
    made = [_pay(stack, amount=700 + n) for n in range(6)]
    assert {p["status"] for p in made} <= {"approved", "pending"}
    assert all(stack.charges(p["id"]) <= 1 for p in made)

    stack.a.faults("ok")
    code, _ = reconcile(stack.env)
    assert code == 0
    settled = [stack.client.get(p["id"]).json() for p in made]
    assert {p["status"] for p in settled} <= {"approved", "declined"}
    for payment in settled:
        assert stack.charges(payment["id"]) == (payment["status"] == "approved")


# --- PostgreSQL ---------------------------------------------------------------------------------------


@pytest.fixture
def pg_database() -> Iterator[str]:
    try:
        admin = psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True)
    except psycopg.OperationalError:
        require_service(False, "PostgreSQL on 127.0.0.1:5432")
        raise
    name = f"payments_test_{os.getpid()}"
    admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgres://postgres@127.0.0.1:5432/{name}"
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def test_payments_and_their_tables_work_on_postgresql(stack, pg_database, tmp_path: Path):
    env = payments_env(pg_database, f"a={stack.a.url},b={stack.b.url}", SECRET, **FAST)
    with payments_service(env, tmp_path / "payments.log") as url:
        local = Stack(PaymentsClient(url, SECRET), stack.a, stack.b, env)
        key, body = str(uuid.uuid4()), _body(6600)
        payment = local.client.pay(body, key).json()
        assert payment["status"] == "approved"
        assert local.client.pay(body, key).json() == payment
        assert local.client.get(payment["id"]).json() == payment
        pending = _lost_answer(local)
    stack.a.faults("ok")
    stack.b.faults("ok")
    code, summary = reconcile(env)  # its own schema step again: the tables exist, nothing changes
    assert code == 0 and summary["settled_ids"] == [pending["id"]]
    assert stack.charges(pending["id"]) == 1
