from django.http import HttpRequest, HttpResponse

from legacy_django.common.pagination import pagination, parse_page_request
from legacy_django.common.params import parse_id
from legacy_django.common.responses import json_response
from legacy_django.items.selectors import item_detail, item_list


def list_items(request: HttpRequest) -> HttpResponse:
    page = parse_page_request(request.GET)
    category = request.GET.get("category") or None
    items, total = item_list(page, category)
    extra = {"category": category} if category else None
    return json_response({"items": items, "pagination": pagination("/api/v1/items", page, total, extra)})


def detail(request: HttpRequest, item_id: str) -> HttpResponse:
    return json_response(item_detail(parse_id(item_id, "item_id")))
