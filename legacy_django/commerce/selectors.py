from typing import Any

from legacy_django.commerce.models import Order
from legacy_django.common.pagination import PageRequest
from legacy_django.common.responses import timestamp


def order_json(order: Order) -> dict[str, Any]:
    lines = [
        {"option_id": line.option_id, "quantity": line.quantity, "unit_price": line.unit_price}
        for line in order.lines.all()
    ]
    return {"id": order.pk, "total": order.total, "created_at": timestamp(order.created_at), "lines": lines}


def order_list_for_user(user_id: int, page: PageRequest) -> tuple[list[dict[str, Any]], int]:
    queryset = Order.objects.filter(user_id=user_id)
    rows = queryset.order_by("-created_at", "-id").prefetch_related("lines")[
        page.offset : page.offset + page.size
    ]
    return [order_json(order) for order in rows], queryset.count()
