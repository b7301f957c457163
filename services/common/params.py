"""Path ids, query parameters, JSON bodies and pagination, parsed as the monolith parses them."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request

from services.common.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType, ValidationFailed
from strictjson import BodyRejected, decode_object

_ID_RE = re.compile(r"[1-9][0-9]{0,17}")
_INT_RE = re.compile(r"-?[0-9]{1,9}")
DEFAULT_SIZE = 20
MAX_SIZE = 100
MAX_PAGE = 1_000_000


def parse_id(raw: str, field: str) -> int:
    if not _ID_RE.fullmatch(raw):
        raise ValidationFailed({field: ["must be a positive integer"]}, message=f"Invalid {field} {raw!r}.")
    return int(raw)


def parse_int(query: Mapping[str, str], field: str, *, default: int, minimum: int, maximum: int) -> int:
    raw = query.get(field)
    if raw is None:
        return default
    if not _INT_RE.fullmatch(raw) or not minimum <= int(raw) <= maximum:
        raise ValidationFailed({field: [f"must be an integer from {minimum} to {maximum}"]})
    return int(raw)


def parse_choice(query: Mapping[str, str], field: str, *, choices: tuple[str, ...]) -> str:
    raw = query.get(field)
    if raw is None:
        return choices[0]
    if raw not in choices:
        raise ValidationFailed({field: [f"must be one of: {', '.join(choices)}"]})
    return raw


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body; ``PayloadTooLarge`` (413) as soon as it is known to exceed ``limit``."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge("The request body is too large.")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge("The request body is too large.")
        chunks.append(chunk)
    return b"".join(chunks)


async def parse_json_body(request: Request, limit: int) -> tuple[dict[str, Any], bytes]:
    """The body as a JSON object and its exact bytes: 415 for another media type, 413 above ``limit``,
    else 400 (strictjson)."""
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type != "application/json":
        raise UnsupportedMediaType("The request body must be JSON (Content-Type: application/json).")
    body = await read_body(request, limit)
    try:
        return decode_object(body), body
    except BodyRejected as rejected:
        raise BadRequest(rejected.message) from None


async def parse_json_object(request: Request, limit: int) -> dict[str, Any]:
    """The body as a JSON object: 415 for another media type, 413 above ``limit``, else 400 (strictjson)."""
    data, _ = await parse_json_body(request, limit)
    return data


@dataclass(frozen=True, kw_only=True, slots=True)
class PageRequest:
    page: int
    size: int

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.size


def parse_page_request(query: Mapping[str, str]) -> PageRequest:
    return PageRequest(
        page=parse_int(query, "page", default=1, minimum=1, maximum=MAX_PAGE),
        size=parse_int(query, "size", default=DEFAULT_SIZE, minimum=1, maximum=MAX_SIZE),
    )


def pagination(
    path: str, request: PageRequest, total: int, extra: Mapping[str, str] | None = None
) -> dict[str, Any]:
    pages = (total + request.size - 1) // request.size

    def link(page: int) -> str:
        return f"{path}?{urlencode({'page': page, 'size': request.size, **(extra or {})})}"

    return {
        "page": request.page,
        "size": request.size,
        "total": total,
        "pages": pages,
        "next": link(request.page + 1) if request.page < pages else None,
        "prev": link(min(request.page - 1, max(pages, 1))) if request.page > 1 else None,
    }
