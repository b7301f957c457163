"""POST /api/v1/orders: lines, stock, time deals, Idempotency-Key, and every error as the envelope.

Concurrency (threads, real transactions) is in test_orders_concurrency.py.
"""

from __future__ import annotations

import importlib
import io
import json
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import OperationalError, connection
from django.db.models import F
from django.test.utils import override_settings
from django.utils import timezone

from legacy_django.commerce import services
from legacy_django.commerce.models import IdempotentRequest, Order, OrderLine, TimeDeal, TimeDealOption
from legacy_django.items.models import Item, ItemOption
from legacy_django.seed import data
from tests.legacy.conftest import assert_error

ORDERS = "/api/v1/orders"


def _body(*lines: tuple[int, int]) -> dict:
    return {"lines": [{"option_id": option_id, "quantity": quantity} for option_id, quantity in lines]}


def _deal(stock: int = 10, options: int = 3, opens_in: timedelta = timedelta(0)) -> list[int]:
    """A new time deal's option ids, through the command tests and benchmarks use."""
    out = io.StringIO()
    args = ["--options", str(options), "--stock-per-option", str(stock), "--json"]
    call_command("timedeal", "create", *args, f"--opens-in={int(opens_in.total_seconds())}s", stdout=out)
    return json.loads(out.getvalue())["option_ids"]


def _snapshot() -> tuple:
    """Everything an order could write."""
    return (
        list(ItemOption.objects.order_by("id").values_list("id", "stock")),
        list(Item.objects.order_by("id").values_list("id", "stock")),
        Order.objects.count(),
        OrderLine.objects.count(),
        IdempotentRequest.objects.count(),
    )


def _stock_consistent(item_id: int) -> bool:
    item = Item.objects.get(pk=item_id)
    return item.stock == sum(ItemOption.objects.filter(item_id=item_id).values_list("stock", flat=True))


def _in_stock_options(count: int, *, minimum: int = 3) -> list[ItemOption]:
    return list(ItemOption.objects.filter(stock__gte=minimum).order_by("id")[:count])


# --- placing an order -------------------------------------------------------------------------------


def test_an_order_of_several_items_takes_every_line_and_keeps_item_stock_the_sum(api):
    deal_options = _deal(stock=5)
    other = ItemOption.objects.filter(stock__gte=3).exclude(
        item_id=ItemOption.objects.get(pk=deal_options[0]).item_id
    )
    other = other.order_by("id").first()
    before = {
        option.pk: option.stock for option in ItemOption.objects.filter(pk__in=[*deal_options, other.pk])
    }
    items = {option.pk: option.item_id for option in ItemOption.objects.filter(pk__in=before)}
    item_stock = {item.pk: item.stock for item in Item.objects.filter(pk__in=items.values())}
    lines = [(deal_options[2], 2), (other.pk, 1), (deal_options[0], 1)]  # any order, items mixed

    response = api.post(ORDERS, _body(*lines), user="demo1")

    assert response.status_code == 201, response.content
    body = response.json()
    assert list(body) == ["id", "status", "total", "created_at", "lines"]
    assert body["status"] == "placed"
    assert response["Location"] == f"/api/v1/orders/{body['id']}"
    assert "Idempotent-Replayed" not in response
    assert [(line["option_id"], line["quantity"]) for line in body["lines"]] == lines
    prices = {}
    for option in ItemOption.objects.filter(pk__in=before).select_related("item"):
        prices[option.pk] = option.item.price - option.item.price * option.item.discount_rate // 100
    assert [line["unit_price"] for line in body["lines"]] == [prices[o] for o, _ in lines]
    assert body["total"] == sum(prices[o] * q for o, q in lines)
    for option_id, quantity in lines:
        assert ItemOption.objects.get(pk=option_id).stock == before[option_id] - quantity
    for item_id, stock in item_stock.items():
        taken = sum(q for o, q in lines if items[o] == item_id)
        assert Item.objects.get(pk=item_id).stock == stock - taken
        assert _stock_consistent(item_id)
    assert api.get(response["Location"], user="demo1").json() == body
    assert body in api.get(f"{ORDERS}?size=100", user="demo1").json()["items"]


def test_the_seeded_time_deal_is_open(api):
    deal = TimeDeal.objects.get()
    assert deal.opens_at <= timezone.now() and deal.closes_at is None
    option_id = (
        TimeDealOption.objects.filter(deal=deal).order_by("option_id").values_list("option_id", flat=True)[0]
    )
    assert api.post(ORDERS, _body((option_id, 1)), user="demo2").status_code == 201
    assert Item.objects.get(pk=deal.item_id).name == data.TIME_DEAL_NAME


def test_the_order_needs_a_signed_in_user(api):
    option = _in_stock_options(1)[0]
    assert_error(api.post(ORDERS, _body((option.pk, 1))), 401, "unauthenticated")
    assert_error(api.get(f"{ORDERS}/1"), 401, "unauthenticated")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "lines"),
        ({"lines": []}, "lines"),
        ({"lines": "1"}, "lines"),
        ({"lines": {"option_id": 1}}, "lines"),
        ({"lines": [{"option_id": n + 1, "quantity": 1} for n in range(21)]}, "lines"),
        ({"option_id": 1, "quantity": 1}, "lines"),  # the old single-option body is gone
        ({"lines": [1]}, "lines[0]"),
        ({"lines": [{"option_id": "1", "quantity": 1}]}, "lines[0].option_id"),
        ({"lines": [{"option_id": 0, "quantity": 1}]}, "lines[0].option_id"),
        ({"lines": [{"option_id": -5, "quantity": 1}]}, "lines[0].option_id"),
        ({"lines": [{"option_id": True, "quantity": 1}]}, "lines[0].option_id"),
        ({"lines": [{"option_id": 1.0, "quantity": 1}]}, "lines[0].option_id"),
        ({"lines": [{"option_id": 10**18, "quantity": 1}]}, "lines[0].option_id"),
        ({"lines": [{"quantity": 1}]}, "lines[0].option_id"),
        ({"lines": [{"option_id": 1}]}, "lines[0].quantity"),
        ({"lines": [{"option_id": 1, "quantity": 0}]}, "lines[0].quantity"),
        ({"lines": [{"option_id": 1, "quantity": 21}]}, "lines[0].quantity"),
        ({"lines": [{"option_id": 1, "quantity": "2"}]}, "lines[0].quantity"),
        ({"lines": [{"option_id": 1, "quantity": 2.0}]}, "lines[0].quantity"),
        ({"lines": [{"option_id": 1, "quantity": None}]}, "lines[0].quantity"),
    ],
)
def test_invalid_lines_are_400_naming_the_field_and_write_nothing(api, body, field):
    api.token("demo1")
    before = _snapshot()
    error = assert_error(api.post(ORDERS, body, user="demo1"), 400, "validation_error")
    assert list(error["fields"]) == [field]
    assert _snapshot() == before


def test_a_repeated_option_and_an_unknown_one_are_named_by_line(api):
    first, second = _in_stock_options(2)
    api.token("demo1")
    before = _snapshot()
    repeated = api.post(ORDERS, _body((first.pk, 1), (second.pk, 1), (first.pk, 2)), user="demo1")
    error = assert_error(repeated, 400, "validation_error")
    assert error["fields"] == {
        "lines[2].option_id": ["repeats lines[0]; order an option once, with the total quantity"]
    }
    unknown = api.post(ORDERS, _body((first.pk, 1), (999999, 1)), user="demo1")
    assert assert_error(unknown, 400, "validation_error")["fields"] == {
        "lines[1].option_id": ["does not exist"]
    }
    assert _snapshot() == before


def test_sold_out_names_every_short_option_and_writes_nothing(api):
    plenty, short, empty = _deal(stock=5)
    ItemOption.objects.filter(pk=empty).update(stock=0)
    Item.objects.filter(options__pk=empty).update(stock=F("stock") - 5)
    api.token("demo1")
    before = _snapshot()
    # The first line could be served: it must not be taken when a later one cannot.
    response = api.post(ORDERS, _body((plenty, 2), (empty, 1), (short, 6)), user="demo1")
    error = assert_error(response, 409, "sold_out", extra={"option_ids"})
    assert error["option_ids"] == [short, empty]
    assert str(short) in error["message"] and str(empty) in error["message"]
    assert _snapshot() == before


def test_the_last_units_sell_and_then_the_option_is_sold_out(api):
    (option_id, *_) = _deal(stock=3)
    assert api.post(ORDERS, _body((option_id, 3)), user="demo1").status_code == 201
    assert ItemOption.objects.get(pk=option_id).stock == 0
    error = assert_error(
        api.post(ORDERS, _body((option_id, 1)), user="demo2"), 409, "sold_out", extra={"option_ids"}
    )
    assert error["option_ids"] == [option_id]
    assert _stock_consistent(ItemOption.objects.get(pk=option_id).item_id)


def test_a_deal_before_it_opens_is_409_not_open_and_after_it_closes_409_deal_closed(api):
    later = _deal(opens_in=timedelta(hours=1))
    regular = _in_stock_options(1)[0]
    api.token("demo1")
    before = _snapshot()
    response = api.post(ORDERS, _body((regular.pk, 1), (later[1], 1)), user="demo1")
    error = assert_error(response, 409, "not_open", extra={"option_ids", "opens_at"})
    assert error["option_ids"] == [later[1]]
    deal = TimeDeal.objects.get(options__option_id=later[1])
    assert error["opens_at"] == deal.opens_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert _snapshot() == before

    TimeDeal.objects.filter(pk=deal.pk).update(
        opens_at=timezone.now() - timedelta(hours=2), closes_at=timezone.now() - timedelta(hours=1)
    )
    closed = assert_error(
        api.post(ORDERS, _body((later[0], 1)), user="demo1"), 409, "deal_closed", extra={"option_ids"}
    )
    assert closed["option_ids"] == [later[0]]
    assert _snapshot() == before


def test_someone_elses_order_is_404_like_a_missing_one(api):
    option = _in_stock_options(1)[0]
    order_id = api.post(ORDERS, _body((option.pk, 1)), user="demo1").json()["id"]
    assert_error(api.get(f"{ORDERS}/{order_id}", user="demo2"), 404, "not_found")
    assert_error(api.get(f"{ORDERS}/99999999", user="demo2"), 404, "not_found")
    assert list(assert_error(api.get(f"{ORDERS}/01", user="demo2"), 400, "validation_error")["fields"]) == [
        "order_id"
    ]
    assert_error(api.request("DELETE", f"{ORDERS}/{order_id}", user="demo1"), 405, "method_not_allowed")


# --- Idempotency-Key ----------------------------------------------------------------------------------


def test_a_retry_with_the_same_key_gets_the_first_answer_and_makes_no_second_order(api):
    option = _in_stock_options(1)[0]
    key = {"Idempotency-Key": "4f1c2a7e-retry-1"}
    first = api.post(ORDERS, _body((option.pk, 1)), user="demo3", headers=key)
    assert first.status_code == 201
    after_first = _snapshot()
    again = api.post(ORDERS, _body((option.pk, 1)), user="demo3", headers=key)
    assert again.status_code == 201
    assert again.content == first.content
    assert again["Location"] == first["Location"]
    assert again["Idempotent-Replayed"] == "true"
    assert _snapshot() == after_first  # no second order, no second stock decrement


def test_the_same_key_with_another_body_is_422_and_keys_belong_to_one_user(api):
    first, second = _in_stock_options(2)
    key = {"Idempotency-Key": "key-shared-by-two"}
    placed = api.post(ORDERS, _body((first.pk, 1)), user="demo3", headers=key)
    assert placed.status_code == 201
    before = _snapshot()
    other_body = api.post(ORDERS, _body((second.pk, 1)), user="demo3", headers=key)
    assert_error(other_body, 422, "idempotency_key_reused")
    assert _snapshot() == before
    # Another user's identical key is another request.
    theirs = api.post(ORDERS, _body((first.pk, 1)), user="demo4", headers=key)
    assert theirs.status_code == 201 and theirs.json()["id"] != placed.json()["id"]


def test_a_failed_order_stores_no_answer_so_its_retry_runs_again(api):
    (option_id, *_) = _deal(stock=1)
    ItemOption.objects.filter(pk=option_id).update(stock=0)
    Item.objects.filter(options__pk=option_id).update(stock=F("stock") - 1)
    key = {"Idempotency-Key": "sold-out-then-restocked"}
    assert_error(
        api.post(ORDERS, _body((option_id, 1)), user="demo1", headers=key),
        409,
        "sold_out",
        extra={"option_ids"},
    )
    assert not IdempotentRequest.objects.filter(key="sold-out-then-restocked").exists()
    ItemOption.objects.filter(pk=option_id).update(stock=1)
    Item.objects.filter(options__pk=option_id).update(stock=F("stock") + 1)
    assert api.post(ORDERS, _body((option_id, 1)), user="demo1", headers=key).status_code == 201


@pytest.mark.parametrize("raw", ["", "x" * 256, "has space", "ключ", "tab\there"])
def test_a_malformed_idempotency_key_is_400(api, raw):
    option = _in_stock_options(1)[0]
    api.token("demo1")
    before = _snapshot()
    response = api.post(ORDERS, _body((option.pk, 1)), user="demo1", headers={"Idempotency-Key": raw})
    assert list(assert_error(response, 400, "validation_error")["fields"]) == ["Idempotency-Key"]
    assert _snapshot() == before


# --- strategies and failures ------------------------------------------------------------------------


def _recorded_steps(monkeypatch, strategy: str, lines: list[tuple[int, int]]) -> list[tuple[str, int, int]]:
    steps: list[tuple[str, int, int]] = []
    original_option, original_item = services.option_take, services.item_take

    def option_take(option_id, quantity):
        steps.append(("option", option_id, quantity))
        return original_option(option_id, quantity)

    def item_take(item_id, quantity):
        steps.append(("item", item_id, quantity))
        return original_item(item_id, quantity)

    monkeypatch.setattr(services, "option_take", option_take)
    monkeypatch.setattr(services, "item_take", item_take)
    with override_settings(STOCK_STRATEGY=strategy):
        placed = services.order_place(1, _body(*lines), idempotency_key=None, fingerprint="-")
    assert [(line["option_id"], line["quantity"]) for line in placed.body["lines"]] == lines
    return steps


def test_the_shipped_order_takes_options_by_id_then_each_item_once(monkeypatch):
    a1, _, a3 = _deal()
    b1, b2, _ = _deal()
    item_a, item_b = (ItemOption.objects.get(pk=o).item_id for o in (a1, b1))
    steps = _recorded_steps(monkeypatch, "ordered", [(b2, 1), (a3, 2), (a1, 1), (b1, 3)])
    assert steps == [
        ("option", a1, 1),
        ("option", a3, 2),
        ("option", b1, 3),
        ("option", b2, 1),
        ("item", item_a, 3),
        ("item", item_b, 4),
    ]
    assert _stock_consistent(item_a) and _stock_consistent(item_b)


def test_the_naive_order_is_the_incidents_option_item_option_item(monkeypatch):
    a1, a2, _ = _deal()
    item = ItemOption.objects.get(pk=a1).item_id
    steps = _recorded_steps(monkeypatch, "naive", [(a2, 1), (a1, 2)])
    assert steps == [("option", a2, 1), ("item", item, 1), ("option", a1, 2), ("item", item, 2)]
    assert _stock_consistent(item)


def test_the_naive_order_also_writes_nothing_when_a_later_line_is_sold_out(api):
    plenty, short, _ = _deal(stock=2)
    api.token("demo1")
    before = _snapshot()
    with override_settings(STOCK_STRATEGY="naive"):
        response = api.post(ORDERS, _body((plenty, 1), (short, 3)), user="demo1")
    assert assert_error(response, 409, "sold_out", extra={"option_ids"})["option_ids"] == [short]
    assert _snapshot() == before


def test_a_database_error_is_a_503_with_retry_after_and_writes_nothing(api, monkeypatch):
    first, second = _in_stock_options(2)
    calls = []

    def failing(option_id, quantity):
        calls.append(option_id)
        if len(calls) == 2:  # after one option was taken: the rollback must undo it
            raise OperationalError("deadlock detected")
        return ItemOption.objects.filter(pk=option_id).update(stock=F("stock") - quantity) == 1

    monkeypatch.setattr(services, "option_take", failing)
    api.token("demo1")
    before = _snapshot()
    response = api.post(
        ORDERS, _body((first.pk, 1), (second.pk, 1)), user="demo1", headers={"Idempotency-Key": "k-503"}
    )
    assert_error(response, 503, "unavailable")
    assert response["Retry-After"] == "1"
    assert _snapshot() == before


def test_an_item_whose_stock_drifted_from_its_options_is_a_500_that_writes_nothing(api):
    (option_id, *_) = _deal(stock=4)
    Item.objects.filter(options__pk=option_id).update(stock=1)  # a write that bypassed the services
    before = _snapshot()
    assert_error(api.post(ORDERS, _body((option_id, 2)), user="demo1"), 500, "internal_error")
    assert _snapshot() == before


# --- the timedeal command and the migration -----------------------------------------------------------


def test_timedeal_create_prints_the_item_and_its_options():
    out = io.StringIO()
    call_command("timedeal", "create", "--options", "4", "--stock-per-option", "50", "--json", stdout=out)
    printed = json.loads(out.getvalue())
    item = Item.objects.get(pk=printed["item_id"])
    options = list(ItemOption.objects.filter(item=item).order_by("id"))
    assert printed["option_ids"] == [option.pk for option in options]
    assert [option.stock for option in options] == [50] * 4
    assert item.stock == 200
    deal = TimeDeal.objects.get(item=item)
    assert deal.closes_at is None and deal.opens_at <= timezone.now()
    assert (
        sorted(TimeDealOption.objects.filter(deal=deal).values_list("initial_stock", flat=True)) == [50] * 4
    )


@pytest.mark.parametrize(
    "args",
    [
        ["--opens-in", "soon"],
        ["--options", "0"],
        ["--stock-per-option", "-1"],
        ["--opens-in", "1h", "--closes-in", "5m"],
    ],
)
def test_timedeal_create_refuses_bad_arguments(args):
    with pytest.raises(CommandError):
        call_command("timedeal", "create", *args, stdout=io.StringIO())


def test_the_migration_backfills_item_stock_from_the_options():
    migration = importlib.import_module("legacy_django.items.migrations.0002_item_stock")
    Item.objects.update(stock=0)
    with connection.cursor() as cursor:
        cursor.execute(migration.BACKFILL)
    for item in Item.objects.all()[:50]:
        assert _stock_consistent(item.pk)
    assert Item.objects.filter(stock__gt=0).exists()
