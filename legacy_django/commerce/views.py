import hashlib

from django.http import HttpRequest, HttpResponse

from legacy_django.commerce.checkout import order_pay
from legacy_django.commerce.selectors import order_get_for_user, order_list_for_user
from legacy_django.commerce.services import order_place, parse_idempotency_key
from legacy_django.common.auth import require_user
from legacy_django.common.middleware import request_id_of
from legacy_django.common.pagination import pagination, parse_page_request
from legacy_django.common.params import parse_id, parse_json_object
from legacy_django.common.responses import json_response
from legacy_django.users.selectors import user_get_active


def list_orders(request: HttpRequest) -> HttpResponse:
    user_id = require_user(request)
    page = parse_page_request(request.GET)
    orders, total = order_list_for_user(user_id, page)
    return json_response({"items": orders, "pagination": pagination("/api/v1/orders", page, total)})


def create_order(request: HttpRequest) -> HttpResponse:
    user = user_get_active(require_user(request))
    key = parse_idempotency_key(request.headers.get("Idempotency-Key"))
    data = parse_json_object(request)
    placed = order_place(
        user.pk, data, idempotency_key=key, fingerprint=hashlib.sha256(request.body).hexdigest()
    )
    headers = {"Location": f"/api/v1/orders/{placed.order_id}"}
    if placed.replayed:
        headers["Idempotent-Replayed"] = "true"
    return json_response(placed.body, status=201, headers=headers)


def detail(request: HttpRequest, order_id: str) -> HttpResponse:
    user_id = require_user(request)
    return json_response(order_get_for_user(user_id, parse_id(order_id, "order_id")))


def pay(request: HttpRequest, order_id: str) -> HttpResponse:
    """Checkout (``commerce/checkout.py``): the body is ignored; the key is required."""
    user = user_get_active(require_user(request))
    key = parse_idempotency_key(request.headers.get("Idempotency-Key"), required=True)
    paid = order_pay(
        user.pk,
        parse_id(order_id, "order_id"),
        key=key,
        # The request is its path: the same key on another order is another request (422).
        fingerprint=hashlib.sha256(f"POST {request.path}".encode()).hexdigest(),
        request_id=request_id_of(request),
    )
    return json_response(
        paid.body, status=paid.status, headers={"Idempotent-Replayed": "true"} if paid.replayed else None
    )
