"""JSON rendering: the byte format every backend shares (compact separators, UTF-8, no ASCII escaping)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from django.http import HttpResponse

from legacy_django.common.errors import ApiError

CONTENT_TYPE = "application/json"


def dumps(data: Any) -> bytes:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> HttpResponse:
    body = dumps(data)
    response = HttpResponse(body, status=status, content_type=CONTENT_TYPE, headers=headers)
    # An explicit length keeps upstream connections reusable (no chunked framing).
    response["Content-Length"] = str(len(body))
    return response


def no_content() -> HttpResponse:
    response = HttpResponse(status=204)
    del response["Content-Type"]
    return response


def error_body(
    code: str,
    message: str,
    request_id: str,
    fields: dict[str, list[str]] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict:
    error: dict[str, Any] = {"code": code, "message": message, "request_id": request_id}
    if fields:
        error["fields"] = fields
    error.update(extra or {})
    return {"error": error}


def error_response(error: ApiError, request_id: str) -> HttpResponse:
    return json_response(
        error_body(error.code, error.message, request_id, error.fields, error.extra),
        status=error.status,
        headers=error.headers,
    )


def timestamp(value: datetime) -> str:
    """UTC, second precision, ``Z`` suffix: ``2026-01-31T20:00:00Z``."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def average(total: int, count: int) -> float | None:
    """Mean rounded half-up to two decimals from integers, so every backend prints the same digits."""
    if count == 0:
        return None
    return float((Decimal(total) / Decimal(count)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))
