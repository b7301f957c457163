"""The recommendations service: the three recommendations.* hot endpoints, on RECOMMENDATIONS_URL (:8003)."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response

from services.common.app import build_app, db_of, methods, principal_of, require_user
from services.common.params import parse_id, parse_int
from services.common.render import json_response
from services.common.settings import ServiceSettings, load_settings
from services.recommendations import queries


def _limit(request: Request) -> int:
    return parse_int(
        request.query_params, "limit", default=queries.DEFAULT_LIMIT, minimum=1, maximum=queries.MAX_LIMIT
    )


async def home(request: Request) -> Response:
    user_id = require_user(request)
    return json_response(await queries.recommendations_home(db_of(request), user_id, _limit(request)))


async def similar(request: Request) -> Response:
    item = parse_id(request.path_params["item_id"], "item_id")
    viewer = principal_of(request).user_id
    return json_response(await queries.recommendations_similar(db_of(request), item, viewer, _limit(request)))


async def recently_viewed(request: Request) -> Response:
    user_id = require_user(request)
    return json_response(await queries.recommendations_recent(db_of(request), user_id, _limit(request)))


def create_app(settings: ServiceSettings | None = None) -> Starlette:
    return build_app(
        settings or load_settings("recommendations"),
        [
            ("/api/v1/recommendations/home", methods(GET=home)),
            ("/api/v1/recommendations/items/{item_id}/similar", methods(GET=similar)),
            ("/api/v1/recommendations/recently-viewed", methods(GET=recently_viewed)),
        ],
    )
