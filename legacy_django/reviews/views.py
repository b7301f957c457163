from django.http import HttpRequest, HttpResponse

from legacy_django.common.auth import principal_of, require_user
from legacy_django.common.pagination import pagination, parse_page_request
from legacy_django.common.params import parse_choice, parse_id, parse_json_object
from legacy_django.common.responses import json_response, no_content
from legacy_django.reviews import selectors, services
from legacy_django.users.selectors import user_get_active


def list_for_item(request: HttpRequest, item_id: str) -> HttpResponse:
    item = parse_id(item_id, "item_id")
    page = parse_page_request(request.GET)
    sort = parse_choice(request.GET, "sort", choices=selectors.SORTS)
    reviews, total = selectors.review_list_for_item(item, page, sort, principal_of(request).user_id)
    links = pagination(f"/api/v1/reviews/items/{item}", page, total, {"sort": sort})
    return json_response({"items": reviews, "pagination": links})


def summary(request: HttpRequest, item_id: str) -> HttpResponse:
    return json_response(selectors.review_summary(parse_id(item_id, "item_id")))


def detail(request: HttpRequest, review_id: str) -> HttpResponse:
    return json_response(
        selectors.review_detail(parse_id(review_id, "review_id"), principal_of(request).user_id)
    )


def create(request: HttpRequest) -> HttpResponse:
    user = user_get_active(require_user(request))
    review = services.review_create(user.pk, parse_json_object(request))
    body = selectors.review_json(review, helpful_ids=set())
    return json_response(body, status=201, headers={"Location": f"/api/v1/reviews/{review.pk}"})


def helpful(request: HttpRequest, review_id: str) -> HttpResponse:
    user = user_get_active(require_user(request))
    review = services.review_vote_helpful(user.pk, parse_id(review_id, "review_id"))
    return json_response(
        {"review_id": review.pk, "helpful_count": review.helpful_count, "helpful_by_me": True}
    )


def delete(request: HttpRequest, review_id: str) -> HttpResponse:
    user = user_get_active(require_user(request))
    services.review_delete(user.pk, parse_id(review_id, "review_id"))
    return no_content()


def mine(request: HttpRequest) -> HttpResponse:
    user_id = require_user(request)
    page = parse_page_request(request.GET)
    reviews, total = selectors.review_list_for_user(user_id, page)
    return json_response({"items": reviews, "pagination": pagination("/api/v1/reviews/me", page, total)})
