from django.http import HttpRequest, HttpResponse

from legacy_django.common.errors import ValidationFailed
from legacy_django.common.pagination import pagination, parse_page_request
from legacy_django.common.responses import json_response
from legacy_django.search.selectors import item_search

MAX_QUERY_LENGTH = 100


def search_items(request: HttpRequest) -> HttpResponse:
    query = request.GET.get("q", "").strip()
    if not 1 <= len(query) <= MAX_QUERY_LENGTH:
        raise ValidationFailed({"q": [f"must be 1 to {MAX_QUERY_LENGTH} characters"]})
    page = parse_page_request(request.GET)
    items, total = item_search(query, page)
    return json_response(
        {"items": items, "pagination": pagination("/api/v1/search/items", page, total, {"q": query})}
    )
