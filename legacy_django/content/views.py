from django.http import HttpRequest, HttpResponse

from legacy_django.common.auth import principal_of, require_user
from legacy_django.common.params import parse_id, parse_int
from legacy_django.common.responses import json_response
from legacy_django.content import selectors


def _limit(request: HttpRequest) -> int:
    return parse_int(
        request.GET, "limit", default=selectors.DEFAULT_LIMIT, minimum=1, maximum=selectors.MAX_LIMIT
    )


def home(request: HttpRequest) -> HttpResponse:
    user_id = require_user(request)
    return json_response(selectors.recommendations_home(user_id, _limit(request)))


def similar(request: HttpRequest, item_id: str) -> HttpResponse:
    item = parse_id(item_id, "item_id")
    viewer = principal_of(request).user_id
    return json_response(selectors.recommendations_similar(item, viewer, _limit(request)))


def recently_viewed(request: HttpRequest) -> HttpResponse:
    user_id = require_user(request)
    return json_response(selectors.recommendations_recent(user_id, _limit(request)))
