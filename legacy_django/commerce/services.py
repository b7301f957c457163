"""Writes of commerce: placing an order, creating a time deal.

Placing an order (``order_place``; docs/api.md "Orders", ADR 0015):

1. the lines are validated (400 ``validation_error`` naming ``lines[i].option_id`` / ``.quantity``);
2. with an ``Idempotency-Key``, an order already placed under it is answered again (same body) or,
   for another body, refused (422); nothing else happens;
3. the options must exist (400) and any time deal among them be open (409 ``not_open`` /
   ``deal_closed``);
4. one transaction: claim the key (a unique row), take the stock, insert the order and its lines,
   store the answer under the key, append a ``stock.changed`` event per item to the outbox
   (ADR 0018). Stock is taken in one global order, every option by id and then
   each item once by id, each a conditional decrement (``stock >= quantity``), so two purchases
   never wait for each other in a cycle (no deadlock) and stock never goes below zero (no
   overselling). Any option short of stock rolls everything back: 409 ``sold_out`` naming them.

A database error that still escapes (a lock timeout, a lost connection) rolled the transaction back:
it is a 503 ``unavailable`` with ``Retry-After``, never retried here (nothing was committed, and the
client's retry with the same key is the safe one).
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, overload

from django.conf import settings
from django.db import IntegrityError, InterfaceError, OperationalError, transaction
from django.utils import timezone

from legacy_django.commerce.models import IdempotentRequest, Order, OrderLine, TimeDeal, TimeDealOption
from legacy_django.commerce.selectors import order_json
from legacy_django.common.errors import ApiError, Conflict, Unavailable, ValidationFailed
from legacy_django.common.responses import dumps, timestamp
from legacy_django.items.selectors import option_item_prices
from legacy_django.items.services import item_create, item_take, option_take, stock_event

logger = logging.getLogger(__name__)

MAX_LINES = 20
MAX_QUANTITY = 20
MAX_ID = 10**18 - 1  # ids are at most 18 digits, as in paths
MAX_KEY_LENGTH = 255


class SoldOut(Conflict):
    code = "sold_out"

    def __init__(self, option_ids: Sequence[int]) -> None:
        names = ", ".join(str(option_id) for option_id in option_ids)
        noun = "option" if len(option_ids) == 1 else "options"
        super().__init__(
            f"Not enough stock left for {noun} {names}; nothing was ordered.",
            extra={"option_ids": list(option_ids)},
        )


class NotOpen(Conflict):
    code = "not_open"

    def __init__(self, option_ids: Sequence[int], opens_at: datetime) -> None:
        super().__init__(
            f"The time deal opens at {timestamp(opens_at)}; nothing was ordered.",
            extra={"option_ids": list(option_ids), "opens_at": timestamp(opens_at)},
        )


class DealClosed(Conflict):
    code = "deal_closed"

    def __init__(self, option_ids: Sequence[int]) -> None:
        super().__init__(
            "The time deal has closed; nothing was ordered.", extra={"option_ids": list(option_ids)}
        )


class IdempotencyKeyReused(ApiError):
    status = 422
    code = "idempotency_key_reused"

    def __init__(self) -> None:
        super().__init__("This Idempotency-Key was already used with a different request body.")


@dataclass(frozen=True, kw_only=True, slots=True)
class Line:
    option_id: int
    quantity: int


@dataclass(frozen=True, kw_only=True, slots=True)
class PricedLine:
    option_id: int
    item_id: int
    quantity: int
    unit_price: int


@dataclass(frozen=True, kw_only=True, slots=True)
class Placed:
    """What ``POST /api/v1/orders`` answers: the order's JSON, and whether it is a replayed answer."""

    order_id: int
    body: dict[str, Any]
    replayed: bool


def _is_id(value: object) -> bool:
    return type(value) is int and 1 <= value <= MAX_ID


def parse_lines(data: dict[str, Any]) -> list[Line]:
    """``{"lines": [{"option_id", "quantity"}, …]}``: 1 to 20 lines, each option once, quantity 1 to 20."""
    raw_lines = data.get("lines")
    if not isinstance(raw_lines, list) or not 1 <= len(raw_lines) <= MAX_LINES:
        raise ValidationFailed({"lines": [f"must be a list of 1 to {MAX_LINES} lines"]})
    errors: dict[str, list[str]] = {}
    first_line: dict[int, int] = {}
    lines = []
    for index, raw in enumerate(raw_lines):
        field = f"lines[{index}]"
        if not isinstance(raw, dict):
            errors[field] = ["must be an object with option_id and quantity"]
            continue
        option_id, quantity = raw.get("option_id"), raw.get("quantity")
        if not _is_id(option_id):
            errors[f"{field}.option_id"] = ["must be a positive integer"]
        elif option_id in first_line:
            errors[f"{field}.option_id"] = [
                f"repeats lines[{first_line[option_id]}]; order an option once, with the total quantity"
            ]
        else:
            first_line[option_id] = index
        if type(quantity) is not int or not 1 <= quantity <= MAX_QUANTITY:
            errors[f"{field}.quantity"] = [f"must be an integer from 1 to {MAX_QUANTITY}"]
        if not errors:
            lines.append(Line(option_id=option_id, quantity=quantity))
    if errors:
        raise ValidationFailed(errors)
    return lines


@overload
def parse_idempotency_key(raw: str | None, *, required: Literal[True]) -> str: ...
@overload
def parse_idempotency_key(raw: str | None, *, required: bool = False) -> str | None: ...
def parse_idempotency_key(raw: str | None, *, required: bool = False) -> str | None:
    """The ``Idempotency-Key`` header: 1 to 255 visible ASCII characters (a UUID, say), or absent
    (a 400 when ``required``)."""
    if raw is None:
        if required:
            raise ValidationFailed(
                {"Idempotency-Key": ["is required"]}, message="Missing Idempotency-Key header."
            )
        return None
    if not 1 <= len(raw) <= MAX_KEY_LENGTH or not all("!" <= char <= "~" for char in raw):
        raise ValidationFailed(
            {"Idempotency-Key": [f"must be 1 to {MAX_KEY_LENGTH} visible ASCII characters"]},
            message="Invalid Idempotency-Key header.",
        )
    return raw


def _priced(lines: Sequence[Line]) -> list[PricedLine]:
    known = option_item_prices(line.option_id for line in lines)
    missing = {
        f"lines[{index}].option_id": ["does not exist"]
        for index, line in enumerate(lines)
        if line.option_id not in known
    }
    if missing:
        raise ValidationFailed(missing)
    return [
        PricedLine(
            option_id=line.option_id,
            item_id=known[line.option_id][0],
            quantity=line.quantity,
            unit_price=known[line.option_id][1],
        )
        for line in lines
    ]


def _check_deals(lines: Sequence[PricedLine], now: datetime) -> None:
    """409 if an option belongs to a time deal that has not opened yet, or has closed."""
    deals = list(
        TimeDealOption.objects.filter(option_id__in=[line.option_id for line in lines])
        .select_related("deal")
        .order_by("option_id")
    )
    not_open = [entry for entry in deals if entry.deal.opens_at > now]
    if not_open:
        raise NotOpen([entry.option_id for entry in not_open], min(entry.deal.opens_at for entry in not_open))
    closed = [entry.option_id for entry in deals if entry.deal.closes_at and entry.deal.closes_at <= now]
    if closed:
        raise DealClosed(closed)


class StockMismatch(RuntimeError):
    """An item holds less than the options just taken from it: ``Item.stock`` drifted from the sum of
    its options' stock (a write that bypassed ``items.services``). A bug: a 500, nothing written."""


def take_stock_ordered(lines: Sequence[PricedLine]) -> None:
    """The shipped order: every option by id (all of them, so a 409 names each one short), then each
    item once, by id, for the sum of its lines. Every purchase acquires its row locks in this one
    global order, so none waits for another that waits for it."""
    short = [
        line.option_id
        for line in sorted(lines, key=lambda line: line.option_id)
        if not option_take(line.option_id, line.quantity)
    ]
    if short:
        raise SoldOut(short)
    per_item: Counter[int] = Counter()
    for line in lines:
        per_item[line.item_id] += line.quantity
    for item_id in sorted(per_item):
        if not item_take(item_id, per_item[item_id]):
            raise StockMismatch(f"item {item_id} holds less than its options")


def take_stock_naive(lines: Sequence[PricedLine]) -> None:
    """The incident's order, for bench/timedeal.py only: per line in request order, the option and
    then its item. A buyer holding the item waits for an option another buyer holds while that one
    waits for the item: PostgreSQL detects the cycle and aborts one of them (deadlock detected)."""
    for line in lines:
        if not option_take(line.option_id, line.quantity):
            raise SoldOut([line.option_id])
        if not item_take(line.item_id, line.quantity):
            raise StockMismatch(f"item {line.item_id} holds less than its options")


STRATEGIES: dict[str, Callable[[Sequence[PricedLine]], None]] = {
    "ordered": take_stock_ordered,
    "naive": take_stock_naive,
}


def _stored_answer(user_id: int, key: str, fingerprint: str) -> Placed | None:
    stored = IdempotentRequest.objects.filter(user_id=user_id, key=key).first()
    if stored is None:
        return None
    if stored.fingerprint != fingerprint:
        raise IdempotencyKeyReused()
    assert stored.order_id is not None
    return Placed(order_id=stored.order_id, body=json.loads(stored.response), replayed=True)


def _place(user_id: int, lines: Sequence[PricedLine], key: str | None, fingerprint: str) -> Placed:
    now = timezone.now()
    _check_deals(lines, now)
    take_stock = STRATEGIES[settings.STOCK_STRATEGY]
    with transaction.atomic():
        # The key first: a concurrent request with the same key waits here, holding no stock.
        claim = (
            IdempotentRequest.objects.create(
                user_id=user_id, key=key, fingerprint=fingerprint, status=0, response="", created_at=now
            )
            if key is not None
            else None
        )
        take_stock(lines)
        # The stock events (ADR 0018): each item once, by id, whose row this transaction already holds.
        for item_id in sorted({line.item_id for line in lines}):
            stock_event(item_id)
        order = Order.objects.create(
            user_id=user_id, total=sum(line.unit_price * line.quantity for line in lines), created_at=now
        )
        order_lines = OrderLine.objects.bulk_create(
            OrderLine(
                order=order, option_id=line.option_id, quantity=line.quantity, unit_price=line.unit_price
            )
            for line in lines
        )
        body = order_json(order, order_lines)
        if claim is not None:
            IdempotentRequest.objects.filter(pk=claim.pk).update(
                status=201, response=dumps(body).decode(), order=order
            )
    return Placed(order_id=order.pk, body=body, replayed=False)


def order_place(
    user_id: int, data: dict[str, Any], *, idempotency_key: str | None, fingerprint: str
) -> Placed:
    """Place an order for ``data`` (the request body; ``fingerprint`` its SHA-256), or answer again
    what ``idempotency_key`` was first answered. See the module docstring."""
    lines = parse_lines(data)
    try:
        if idempotency_key is not None:
            stored = _stored_answer(user_id, idempotency_key, fingerprint)
            if stored is not None:
                return stored
        priced = _priced(lines)
        try:
            return _place(user_id, priced, idempotency_key, fingerprint)
        except IntegrityError:
            # A concurrent request with the same key committed first: everything here was rolled
            # back; answer what it answered. Any other integrity error is a bug.
            stored = _stored_answer(user_id, idempotency_key, fingerprint) if idempotency_key else None
            if stored is None:
                raise
            return stored
    except (OperationalError, InterfaceError) as error:
        cause = error.__cause__
        logger.warning(
            "order not placed (rolled back): %s %s", getattr(cause, "sqlstate", None) or "-", error
        )
        raise Unavailable(
            "The order could not be placed right now and nothing was saved; retry shortly "
            "(with the same Idempotency-Key)."
        ) from error


def timedeal_create(
    *,
    options: int,
    stock_per_option: int,
    opens_at: datetime,
    closes_at: datetime | None,
    name: str,
    price: int,
    discount_rate: int,
    brand_id: int,
    category_id: int,
) -> TimeDeal:
    """A new item with ``options`` options of ``stock_per_option`` each, on sale from ``opens_at``."""
    now = timezone.now()
    with transaction.atomic():
        item, created = item_create(
            name=name,
            brand_id=brand_id,
            category_id=category_id,
            price=price,
            discount_rate=discount_rate,
            options=[(f"Option {n}", stock_per_option) for n in range(1, options + 1)],
            created_at=now,
        )
        deal = TimeDeal.objects.create(item=item, opens_at=opens_at, closes_at=closes_at, created_at=now)
        TimeDealOption.objects.bulk_create(
            TimeDealOption(deal=deal, option=option, initial_stock=option.stock) for option in created
        )
    return deal
