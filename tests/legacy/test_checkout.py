"""POST /api/v1/orders/{id}/payment: the monolith pays an order through the real payments service and a
real provider simulator (processes), signed service to service; one charge per order, whatever is
retried."""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from django.core.management import call_command
from django.test.utils import override_settings

from legacy_django.commerce import checkout
from legacy_django.commerce.models import IdempotentRequest, Order
from legacy_django.items.models import ItemOption
from tests.legacy.conftest import assert_error
from tests.support.payments import Simulator, payments_env, payments_service, reconcile, simulator
from tests.support.servers import free_port

ORDERS = "/api/v1/orders"
HELD_MS = 4000  # an answer held longer than the payments service waits for it


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Simulator, dict[str, str], str]]:
    """One provider and the payments service in front of it, on a database of their own."""
    work = tmp_path_factory.mktemp("checkout")
    with simulator("a", work) as a:
        env = payments_env(
            f"sqlite:///{work / 'payments.sqlite3'}",
            f"a={a.url}",
            settings.IDENTITY_SECRET,
            provider_timeout="3.0",
            status_timeout="0.2",
            status_retries="1",
            slow_ms="5000",
        )
        with payments_service(env, work / "payments.log") as url:
            yield a, env, url
    checkout._client().close()  # the monolith's pool of connections to the payments service
    checkout._client.cache_clear()


@pytest.fixture
def pg(provider: tuple[Simulator, dict[str, str], str]) -> Iterator[Simulator]:
    simulator, _, url = provider
    simulator.faults("ok")
    with override_settings(PAYMENTS_URL=url, PAYMENTS_TIMEOUT_SECONDS=5):
        yield simulator


def _order(api: Any, user: str = "demo1", option_id: int | None = None, quantity: int = 1) -> dict[str, Any]:
    if option_id is None:
        option_id = ItemOption.objects.filter(stock__gte=5).order_by("id").values_list("id", flat=True)[0]
    body = {"lines": [{"option_id": option_id, "quantity": quantity}]}
    response = api.post(ORDERS, body, user=user)
    assert response.status_code == 201, response.content
    order: dict[str, Any] = response.json()
    return order


def _pay(api: Any, order_id: int, key: str | None = None, user: str = "demo1") -> Any:
    headers = {"Idempotency-Key": key or str(uuid.uuid4())}
    return api.post(f"{ORDERS}/{order_id}/payment", user=user, headers=headers)


def _charges(pg: Simulator, reference: str) -> int:
    return pg.charged(reference)


def test_paying_an_order_charges_it_once_and_every_retry_answers_the_same_payment(api, pg):
    order = _order(api)
    key = str(uuid.uuid4())
    response = _pay(api, order["id"], key)
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["order"] == {**order, "status": "paid"}
    payment = body["payment"]
    assert (payment["status"], payment["provider"]) == ("approved", "a")
    assert (payment["order_id"], payment["amount"], payment["currency"]) == (
        order["id"],
        order["total"],
        "KRW",
    )
    assert api.get(f"{ORDERS}/{order['id']}", user="demo1").json()["status"] == "paid"

    again = _pay(api, order["id"], key)
    assert (again.status_code, again["Idempotent-Replayed"]) == (201, "true")
    assert again.json() == body
    other_key = _pay(api, order["id"])  # another key: a paid order answers its payment
    assert other_key.status_code == 200
    assert other_key.json() == body
    assert _charges(pg, payment["id"]) == 1
    assert Order.objects.get(pk=order["id"]).payment_id == payment["id"]


def test_checkout_needs_the_owner_and_a_key_and_a_key_belongs_to_one_order(api, pg):
    order, other = _order(api), _order(api)
    before = len(pg.ledger())
    assert_error(api.post(f"{ORDERS}/{order['id']}/payment"), 401, "unauthenticated")
    assert_error(_pay(api, order["id"], user="demo2"), 404, "not_found")
    missing = api.post(f"{ORDERS}/{order['id']}/payment", user="demo1")
    assert "Idempotency-Key" in assert_error(missing, 400, "validation_error")["fields"]
    assert_error(_pay(api, 10**17), 404, "not_found")
    assert len(pg.ledger()) == before

    key = str(uuid.uuid4())
    assert _pay(api, order["id"], key).status_code == 201
    assert_error(_pay(api, other["id"], key), 422, "idempotency_key_reused")
    assert Order.objects.get(pk=other["id"]).status == "placed"
    assert len(pg.ledger()) == before + 1


def test_a_declined_payment_fails_the_order_and_paying_again_is_a_new_attempt(api, pg):
    out = io.StringIO()
    args = ["--options", "1", "--stock-per-option", "5", "--price", "50000000", "--discount-rate", "0"]
    call_command("timedeal", "create", *args, "--json", stdout=out)  # above the card limit: declined
    order = _order(api, option_id=json.loads(out.getvalue())["option_ids"][0])
    first = _pay(api, order["id"])
    assert first.status_code == 201
    assert first.json()["order"]["status"] == "payment_failed"
    assert first.json()["payment"]["status"] == "declined"
    second = _pay(api, order["id"])
    assert second.json()["payment"]["id"] != first.json()["payment"]["id"]
    assert Order.objects.get(pk=order["id"]).payment_attempts == 2
    assert _charges(pg, first.json()["payment"]["id"]) + _charges(pg, second.json()["payment"]["id"]) == 0


def test_the_payments_service_unreachable_is_a_503_and_the_order_stays_placed(api, pg):
    order = _order(api)
    with override_settings(PAYMENTS_URL=f"http://127.0.0.1:{free_port()}"):
        response = _pay(api, order["id"])
    assert_error(response, 503, "unavailable")
    assert response["Retry-After"] == "1"
    assert Order.objects.get(pk=order["id"]).status == "placed"
    assert not IdempotentRequest.objects.filter(order_id=order["id"]).exists()
    assert _pay(api, order["id"]).json()["order"]["status"] == "paid"  # a retry is safe


def test_a_lost_answer_leaves_the_order_pending_until_the_payment_settles(api, pg, provider):
    _, env, _ = provider
    order = _order(api)
    pg.faults("timeout_after_charge", delay_ms=HELD_MS)
    pending = _pay(api, order["id"])
    assert pending.status_code == 202, pending.content
    assert pending.json()["order"]["status"] == "payment_pending"
    payment = pending.json()["payment"]
    assert payment["status"] == "pending" and _charges(pg, payment["id"]) == 1

    pg.faults("ok")
    reconcile(env)
    paid = _pay(api, order["id"])  # asks for the same payment: settled by now
    assert paid.status_code == 201
    assert paid.json()["order"]["status"] == "paid"
    assert paid.json()["payment"]["id"] == payment["id"]
    assert paid.json()["payment"]["status"] == "approved"
    assert _charges(pg, payment["id"]) == 1


def test_no_answer_in_time_leaves_the_order_pending_and_paying_again_finds_the_payment(api, pg):
    order = _order(api)
    pg.faults("slow", delay_ms=1500)  # approved, but after the monolith stopped waiting (1 s)
    with override_settings(PAYMENTS_TIMEOUT_SECONDS=1):
        pending = _pay(api, order["id"])
    assert pending.status_code == 202
    assert pending.json()["order"]["status"] == "payment_pending"
    assert pending.json()["payment"] is None
    pg.faults("ok")
    paid = _pay(api, order["id"])  # the same attempt: the payment the first call made
    assert paid.status_code == 201
    payment = paid.json()["payment"]
    assert (paid.json()["order"]["status"], payment["status"]) == ("paid", "approved")
    assert _charges(pg, payment["id"]) == 1
    assert len([c for c in pg.ledger() if c["amount"] == order["total"] and c["status"] == "approved"]) >= 1
