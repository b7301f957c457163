from django.http import HttpRequest, HttpResponse

from legacy_django.commerce.selectors import order_json, order_list_for_user
from legacy_django.commerce.services import order_place
from legacy_django.common.auth import require_user
from legacy_django.common.pagination import pagination, parse_page_request
from legacy_django.common.params import parse_json_object
from legacy_django.common.responses import json_response
from legacy_django.users.selectors import user_get_active


def list_orders(request: HttpRequest) -> HttpResponse:
    user_id = require_user(request)
    page = parse_page_request(request.GET)
    orders, total = order_list_for_user(user_id, page)
    return json_response({"items": orders, "pagination": pagination("/api/v1/orders", page, total)})


def create_order(request: HttpRequest) -> HttpResponse:
    user = user_get_active(require_user(request))
    order = order_place(user.pk, parse_json_object(request))
    return json_response(order_json(order), status=201, headers={"Location": f"/api/v1/orders/{order.pk}"})
