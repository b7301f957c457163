"""The reviews service: the seven reviews.* hot endpoints (docs/api.md), served on REVIEWS_URL (:8002)."""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response

from services.common.app import build_app, db_of, methods, principal_of, require_user, settings_of
from services.common.errors import ValidationFailed
from services.common.params import pagination, parse_choice, parse_id, parse_json_object, parse_page_request
from services.common.render import json_response, no_content
from services.common.settings import ServiceSettings, load_settings
from services.reviews import queries

BODY_MAX_LENGTH = 2000


async def list_for_item(request: Request) -> Response:
    item = parse_id(request.path_params["item_id"], "item_id")
    page = parse_page_request(request.query_params)
    sort = parse_choice(request.query_params, "sort", choices=queries.SORTS)
    viewer = principal_of(request).user_id
    reviews, total = await queries.review_list_for_item(db_of(request), item, page, sort, viewer)
    links = pagination(f"/api/v1/reviews/items/{item}", page, total, {"sort": sort})
    return json_response({"items": reviews, "pagination": links})


async def summary(request: Request) -> Response:
    item = parse_id(request.path_params["item_id"], "item_id")
    return json_response(await queries.review_summary(db_of(request), item))


async def detail(request: Request) -> Response:
    review = parse_id(request.path_params["review_id"], "review_id")
    return json_response(await queries.review_detail(db_of(request), review, principal_of(request).user_id))


async def _validated(request: Request, data: dict[str, Any]) -> tuple[int, int, str]:
    item_id, rating, body = data.get("item_id"), data.get("rating"), data.get("body")
    errors: dict[str, list[str]] = {}
    if item_id is None:
        errors["item_id"] = ["is required"]
    elif type(item_id) is not int or not 1 <= item_id < 10**18:
        errors["item_id"] = ["must be a positive integer"]
    if rating is None:
        errors["rating"] = ["is required"]
    elif type(rating) is not int or not 1 <= rating <= 5:
        errors["rating"] = ["must be an integer from 1 to 5"]
    if body is None:
        errors["body"] = ["is required"]
    elif not isinstance(body, str) or not body.strip():
        errors["body"] = ["must be a non-empty string"]
    elif len(body) > BODY_MAX_LENGTH:
        errors["body"] = [f"must be at most {BODY_MAX_LENGTH} characters"]
    if not errors and not await queries.item_exists(db_of(request), item_id):  # type: ignore[arg-type]
        errors["item_id"] = ["does not exist"]
    if errors:
        raise ValidationFailed(errors)
    return item_id, rating, body  # type: ignore[return-value]


async def create(request: Request) -> Response:
    user_id = require_user(request)
    await queries.require_active_user(db_of(request), user_id)
    data = await parse_json_object(request, settings_of(request).max_body_bytes)
    item_id, rating, body = await _validated(request, data)
    review = await queries.review_create(db_of(request), user_id, item_id, rating, body)
    return json_response(review, status=201, headers={"Location": f"/api/v1/reviews/{review['id']}"})


async def helpful(request: Request) -> Response:
    user_id = require_user(request)
    await queries.require_active_user(db_of(request), user_id)
    review = parse_id(request.path_params["review_id"], "review_id")
    return json_response(await queries.review_vote_helpful(db_of(request), user_id, review))


async def delete(request: Request) -> Response:
    user_id = require_user(request)
    await queries.require_active_user(db_of(request), user_id)
    await queries.review_delete(
        db_of(request), user_id, parse_id(request.path_params["review_id"], "review_id")
    )
    return no_content()


async def mine(request: Request) -> Response:
    user_id = require_user(request)
    page = parse_page_request(request.query_params)
    reviews, total = await queries.review_list_for_user(db_of(request), user_id, page)
    return json_response({"items": reviews, "pagination": pagination("/api/v1/reviews/me", page, total)})


def create_app(settings: ServiceSettings | None = None) -> Starlette:
    return build_app(
        settings or load_settings("reviews"),
        [
            ("/api/v1/reviews", methods(POST=create)),
            ("/api/v1/reviews/me", methods(GET=mine)),
            ("/api/v1/reviews/items/{item_id}", methods(GET=list_for_item)),
            ("/api/v1/reviews/items/{item_id}/summary", methods(GET=summary)),
            ("/api/v1/reviews/{review_id}", methods(GET=detail, DELETE=delete)),
            ("/api/v1/reviews/{review_id}/helpful", methods(PUT=helpful)),
        ],
    )
