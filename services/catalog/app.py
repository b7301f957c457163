"""The catalog service: ``GET /api/v1/catalog/items/{item_id}`` and ``GET /api/v1/catalog/items?ids=…``,
answered from ``catalog_item`` (each document stored as the JSON it is sent as: a read is one indexed
lookup and no encoding). The monolith answers the same routes by assembling the documents from its
tables; the contract tests compare both once the stream is drained."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response

from events.documents import BadIds, missing_message, parse_item_ids
from events.schema import catalog_items, ensure_view
from services.common.app import build_app, db_of, methods
from services.common.errors import NotFound, ValidationFailed
from services.common.params import parse_id
from services.common.render import CONTENT_TYPE
from services.common.settings import ServiceSettings, load_settings


async def _documents(request: Request, item_ids: list[int]) -> list[bytes]:
    """The stored documents of ``item_ids`` in that order; a 404 naming every id the view lacks."""
    query = select(catalog_items.c.item_id, catalog_items.c.document).where(
        catalog_items.c.item_id.in_(item_ids)
    )
    async with db_of(request).read() as conn:
        found = {item_id: document for item_id, document in await conn.execute(query)}
    missing = [item_id for item_id in item_ids if item_id not in found]
    if missing:
        raise NotFound(missing_message(missing))
    return [found[item_id].encode() for item_id in item_ids]


def _json(body: bytes) -> Response:
    return Response(body, media_type=CONTENT_TYPE)


async def item(request: Request) -> Response:
    (document,) = await _documents(request, [parse_id(request.path_params["item_id"], "item_id")])
    return _json(document)


async def items(request: Request) -> Response:
    try:
        item_ids = parse_item_ids(request.query_params.get("ids"))
    except BadIds as bad:
        raise ValidationFailed({"ids": [str(bad)]}) from None
    documents = await _documents(request, item_ids)
    return _json(b'{"items":[' + b",".join(documents) + b"]}")


@asynccontextmanager
async def _view(app: Starlette) -> AsyncIterator[None]:
    await ensure_view(app.state.db.engine)
    yield


def create_app(settings: ServiceSettings | None = None) -> Starlette:
    return build_app(
        settings or load_settings("catalog"),
        [
            ("/api/v1/catalog/items", methods(GET=items)),
            ("/api/v1/catalog/items/{item_id}", methods(GET=item)),
        ],
        extension=_view,
    )
