"""JSON bytes exactly as the monolith renders them (docs/api.md): compact, UTF-8, unescaped."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from starlette.responses import Response

from services.common.errors import ApiError

CONTENT_TYPE = "application/json"


def dumps(data: Any) -> bytes:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(dumps(data), status_code=status, media_type=CONTENT_TYPE, headers=headers)


def no_content() -> Response:
    return Response(status_code=204)


def error_body(
    code: str, message: str, request_id: str, fields: dict[str, list[str]] | None = None
) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message, "request_id": request_id}
    if fields:
        error["fields"] = fields
    return {"error": error}


def error_response(error: ApiError, request_id: str) -> Response:
    body = error_body(error.code, error.message, request_id, error.fields)
    return json_response(body, status=error.status, headers=error.headers)


def timestamp(value: datetime) -> str:
    """UTC, second precision, ``Z``; naive values (SQLite) are UTC already."""
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def average(total: int, count: int) -> float | None:
    if count == 0:
        return None
    return float((Decimal(total) / Decimal(count)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))
