from collections.abc import Iterable
from typing import Any

from django.db.models import Prefetch

from legacy_django.commerce.models import Order, OrderLine
from legacy_django.common.errors import NotFound
from legacy_django.common.pagination import PageRequest
from legacy_django.common.responses import timestamp


def order_json(order: Order, lines: Iterable[OrderLine]) -> dict[str, Any]:
    return {
        "id": order.pk,
        "status": order.status,
        "total": order.total,
        "created_at": timestamp(order.created_at),
        "lines": [
            {"option_id": line.option_id, "quantity": line.quantity, "unit_price": line.unit_price}
            for line in lines
        ],
    }


def _with_lines() -> Prefetch:
    return Prefetch("lines", queryset=OrderLine.objects.order_by("id"))


def order_list_for_user(user_id: int, page: PageRequest) -> tuple[list[dict[str, Any]], int]:
    queryset = Order.objects.filter(user_id=user_id)
    rows = queryset.order_by("-created_at", "-id").prefetch_related(_with_lines())[
        page.offset : page.offset + page.size
    ]
    return [order_json(order, order.lines.all()) for order in rows], queryset.count()


def order_get_for_user(user_id: int, order_id: int) -> dict[str, Any]:
    """The caller's order; someone else's is a 404 like one that does not exist."""
    order = Order.objects.filter(pk=order_id, user_id=user_id).prefetch_related(_with_lines()).first()
    if order is None:
        raise NotFound(f"Order {order_id} does not exist.")
    return order_json(order, order.lines.all())
