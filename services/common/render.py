"""JSON bytes exactly as the monolith renders them (docs/api.md): compact, UTF-8, unescaped."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from starlette.responses import Response

from services.common.errors import ApiError

CONTENT_TYPE = "application/json"
# ``json.dumps(data, ensure_ascii=False, separators=(",", ":"))``, as the monolith calls it, builds this
# encoder on every call; one built once writes the same bytes. Without the circular-reference check:
# the answers are fresh trees of dicts and lists (a cycle would be a RecursionError, not a ValueError).
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), check_circular=False)


def dumps(data: Any) -> bytes:
    return _ENCODER.encode(data).encode("utf-8")


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
    """UTC, second precision, ``Z``; naive values (SQLite) are UTC already.

    The monolith's ``strftime("%Y-%m-%dT%H:%M:%SZ")``; ``isoformat`` writes the same characters for
    years 1000-9999 at a fraction of the cost (a list page formats one per review)."""
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    if value.year < 1000:  # strftime does not pad the year to four digits; isoformat does
        return value.strftime("%Y-%m-%dT%H:%M:%SZ")
    return value.replace(tzinfo=None, microsecond=0).isoformat() + "Z"


def average(total: int, count: int) -> float | None:
    """The mean rounded half-up to two decimals, as the monolith's
    ``float((Decimal(total) / Decimal(count)).quantize(Decimal("0.01"), ROUND_HALF_UP))``.

    For a non-negative total the same number in integers: ``hundredths`` is the mean in hundredths
    rounded half up, and ``hundredths / 100`` (a correctly rounded division of two integers) is the
    double nearest to that two-decimal number, which is what ``float`` of the Decimal gives."""
    if count == 0:
        return None
    if total < 0 or count < 0:
        return float((Decimal(total) / Decimal(count)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))
    hundredths = (200 * total + count) // (2 * count)
    return hundredths / 100
