"""Purchases under contention, with real transactions in threads (one database connection each).

Runs in both passes of ``make test``: SQLite (writers serialized by BEGIN IMMEDIATE) and PostgreSQL
(row locks). Each test commits for real (``transaction=True``), so pytest-django empties every table
after it: each test makes its own users and time deal, and the seed is loaded again after the module.
"""

from __future__ import annotations

import json
import logging
import random
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection, connections
from django.db.models import Sum
from django.test import Client
from django.test.utils import override_settings
from django.utils import timezone

from legacy_django.commerce import services
from legacy_django.commerce.models import IdempotentRequest, Order, OrderLine
from legacy_django.commerce.services import timedeal_create
from legacy_django.items.models import Brand, Category, Item, ItemOption
from legacy_django.seed import data
from legacy_django.seed.management.commands.seed import seed
from legacy_django.users.models import User
from tests.legacy.conftest import assertion_headers

pytestmark = pytest.mark.django_db(transaction=True)

ORDERS = "/api/v1/orders"
DEADLINE_S = 20.0  # a bound for waits that must end; never reached when the code is right


@pytest.fixture(autouse=True, scope="module")
def _seed_again_after_the_module(django_db_blocker: Any) -> Iterator[None]:
    yield
    with django_db_blocker.unblock():
        if not User.objects.exists():  # emptied after the last transactional test
            seed(data.SCALES["small"])


def _buyers(count: int) -> list[int]:
    return [
        User.objects.create(username=f"buyer{n:03d}", display_name=f"Buyer {n}", password="!").pk
        for n in range(1, count + 1)
    ]


def _deal(options: int, stock_per_option: int, opens_in: timedelta = timedelta(0)) -> list[int]:
    brand, _ = Brand.objects.get_or_create(name="Deal Brand")
    category, _ = Category.objects.get_or_create(slug="deals", defaults={"name": "Deals"})
    deal = timedeal_create(
        options=options,
        stock_per_option=stock_per_option,
        opens_at=timezone.now() + opens_in,
        closes_at=None,
        name="Time Deal",
        price=10000,
        discount_rate=50,
        brand_id=brand.pk,
        category_id=category.pk,
    )
    return sorted(deal.options.values_list("option_id", flat=True))


@dataclass
class Answer:
    status: int
    body: dict[str, Any]
    replayed: bool


def _order(user: int, lines: list[tuple[int, int]], key: str | None = None) -> Answer:
    """POST /api/v1/orders as ``user`` (the gateway's signed assertion), on this thread's connection."""
    body = json.dumps({"lines": [{"option_id": o, "quantity": q} for o, q in lines]}).encode()
    headers = assertion_headers("POST", ORDERS, user=str(user), body=body)
    if key is not None:
        headers["Idempotency-Key"] = key
    try:
        response = Client().generic("POST", ORDERS, body, content_type="application/json", headers=headers)
        return Answer(response.status_code, response.json(), response.get("Idempotent-Replayed") == "true")
    finally:
        connections.close_all()  # this thread's connection; the main thread keeps its own


def _in_threads(jobs: list[Callable[[], Answer | list[Answer]]]) -> list[Any]:
    """Run every job in its own thread, released together; their results in job order."""
    start = threading.Barrier(len(jobs))
    results: list[Any] = [None] * len(jobs)
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            start.wait(timeout=DEADLINE_S)
            results[index] = jobs[index]()
        except BaseException as error:  # surfaced below
            errors.append(error)

    threads = [threading.Thread(target=run, args=(n,), name=f"buyer-{n}") for n in range(len(jobs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=DEADLINE_S)
    assert not any(thread.is_alive() for thread in threads), "a buyer never finished"
    assert not errors, errors
    return results


def _assert_invariants(option_ids: list[int], initial: int, placed: list[Answer]) -> None:
    """Sold units per option = initial - remaining; nothing negative; item stock = the sum of its
    options' stock; every order on these options is one the API answered 201 for, with its lines."""
    options = {option.pk: option for option in ItemOption.objects.filter(pk__in=option_ids)}
    sold = dict(
        OrderLine.objects.filter(option_id__in=option_ids)
        .values_list("option_id")
        .annotate(total=Sum("quantity"))
        .values_list("option_id", "total")
    )
    for option_id, option in options.items():
        assert 0 <= option.stock <= initial
        assert sold.get(option_id, 0) == initial - option.stock, option_id
    item = Item.objects.get(pk=next(iter(options.values())).item_id)
    assert item.stock == sum(option.stock for option in options.values())
    stored = set(Order.objects.filter(lines__option_id__in=option_ids).values_list("id", flat=True))
    assert stored == {answer.body["id"] for answer in placed}
    for answer in placed:
        lines = OrderLine.objects.filter(order_id=answer.body["id"]).order_by("id")
        assert [(line.option_id, line.quantity) for line in lines] == [
            (line["option_id"], line["quantity"]) for line in answer.body["lines"]
        ]


def test_concurrent_buyers_never_oversell_and_keep_item_stock_the_sum_of_its_options():
    initial = 5
    option_ids = _deal(options=4, stock_per_option=initial)  # 20 units for about 100 asked
    buyers = _buyers(8)

    def shopper(user: int, seed_value: int) -> list[Answer]:
        rng = random.Random(seed_value)
        answers = []
        for _ in range(6):
            chosen = rng.sample(option_ids, rng.randint(1, 3))  # random order, as apps send them
            answers.append(_order(user, [(option_id, rng.randint(1, 2)) for option_id in chosen]))
        return answers

    results = _in_threads([lambda user=user, n=n: shopper(user, n) for n, user in enumerate(buyers)])
    answers = [answer for answers in results for answer in answers]
    statuses = Counter(answer.status for answer in answers)
    assert set(statuses) <= {201, 409}, statuses  # no deadlock, no lock timeout, no 500
    assert statuses[201] >= 1 and statuses[409] >= 1, statuses
    assert {answer.body["error"]["code"] for answer in answers if answer.status == 409} == {"sold_out"}
    _assert_invariants(option_ids, initial, [answer for answer in answers if answer.status == 201])


def test_a_request_retried_while_the_first_is_running_creates_one_order():
    option_ids = _deal(options=2, stock_per_option=10)
    (buyer,) = _buyers(1)
    lines = [(option_ids[1], 1), (option_ids[0], 2)]
    answers = _in_threads([lambda: _order(buyer, lines, key="retry-42") for _ in range(6)])
    assert {answer.status for answer in answers} == {201}
    assert len({json.dumps(answer.body) for answer in answers}) == 1  # every one got the first answer
    assert sum(not answer.replayed for answer in answers) == 1
    assert IdempotentRequest.objects.filter(key="retry-42").count() == 1
    _assert_invariants(option_ids, 10, answers[:1])
    assert ItemOption.objects.get(pk=option_ids[0]).stock == 8  # taken once


class Choreography:
    """The incident's interleaving, step by step: buyer A orders options (o1, o2), buyer B (o2).

    With the naive order A takes o1 and the item, then waits (in Python, holding both) until B has
    taken o2; B sends its order only once A holds the item, takes o2 and asks for the item; A then
    asks for o2.
    """

    def __init__(self, o2: int) -> None:
        self.o2 = o2
        self.a_has_item = threading.Event()
        self.b_has_o2 = threading.Event()
        self.b_took_o2_inside_a = False

    def option_take(self, take: Callable[[int, int], bool]) -> Callable[[int, int], bool]:
        def wrapped(option_id: int, quantity: int) -> bool:
            buyer = threading.current_thread().name
            if buyer == "buyer-0" and option_id == self.o2:
                # SQLite: B cannot even begin while A's transaction is open, so this never happens.
                self.b_took_o2_inside_a = self.b_has_o2.wait(timeout=WINDOW_S)
            taken = take(option_id, quantity)
            if buyer == "buyer-1":
                self.b_has_o2.set()
            return taken

        return wrapped

    def item_take(self, take: Callable[[int, int], bool]) -> Callable[[int, int], bool]:
        def wrapped(item_id: int, quantity: int) -> bool:
            taken = take(item_id, quantity)
            if threading.current_thread().name == "buyer-0":
                self.a_has_item.set()
            return taken

        return wrapped

    def after_a_holds_the_item(self, order: Callable[[], Answer]) -> Callable[[], Answer]:
        def send() -> Answer:
            assert self.a_has_item.wait(timeout=DEADLINE_S)
            return order()

        return send


# How long A waits, holding its locks, for B to take o2 inside A's transaction: B does at once on
# PostgreSQL; on SQLite B never can (its BEGIN IMMEDIATE waits for A's commit), so A moves on after it.
WINDOW_S = 0.5 if connection.vendor == "sqlite" else DEADLINE_S


def test_the_incidents_interleaving_deadlocks_the_naive_order_on_postgresql_only(monkeypatch, caplog):
    option_ids = _deal(options=2, stock_per_option=10)
    a, b = _buyers(2)
    script = Choreography(o2=option_ids[1])
    monkeypatch.setattr(services, "option_take", script.option_take(services.option_take))
    monkeypatch.setattr(services, "item_take", script.item_take(services.item_take))
    caplog.set_level(logging.WARNING, logger="legacy_django.commerce.services")
    with override_settings(STOCK_STRATEGY="naive"):
        answers = _in_threads(
            [
                lambda: _order(a, [(option_ids[0], 1), (option_ids[1], 1)]),
                script.after_a_holds_the_item(lambda: _order(b, [(option_ids[1], 1)])),
            ]
        )
    statuses = sorted(answer.status for answer in answers)
    if connection.vendor == "postgresql":
        assert script.b_took_o2_inside_a  # the cycle was set up: A holds the item, B holds o2
        assert statuses == [201, 503]  # PostgreSQL broke the deadlock by aborting one of them
        failed = next(answer for answer in answers if answer.status == 503)
        assert failed.body["error"]["code"] == "unavailable"
        assert "40P01" in caplog.text  # deadlock detected, not a timeout
    else:
        assert not script.b_took_o2_inside_a  # writers are serialized: no cycle can form
        assert statuses == [201, 201]
    _assert_invariants(option_ids, 10, [answer for answer in answers if answer.status == 201])
