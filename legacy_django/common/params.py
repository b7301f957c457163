"""Parsing of path ids, query parameters and JSON bodies into plain values, or a 400/413/415 error."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest

from legacy_django.common.errors import (
    BadRequest,
    PayloadTooLarge,
    UnsupportedMediaType,
    ValidationFailed,
)
from strictjson import BAD_TEXT, BodyRejected, decode_object

# Ids are positive integers that fit a signed 64-bit column: no sign, no leading zero, at most 18 digits.
_ID_RE = re.compile(r"[1-9][0-9]{0,17}")
_INT_RE = re.compile(r"-?[0-9]{1,9}")
_BAD_CHAR_RE = re.compile("[\x00\ud800-\udfff]")


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


def _is_json(content_type: str) -> bool:
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type == "application/json"


def read_body(request: HttpRequest) -> bytes:
    try:
        return request.body
    except RequestDataTooBig:
        raise PayloadTooLarge("The request body is too large.") from None


def parse_json_object(request: HttpRequest) -> dict[str, Any]:
    """The body as a JSON object: 415 for another media type, 413 above the limit, else 400 (strictjson)."""
    if not _is_json(request.content_type or ""):
        raise UnsupportedMediaType("The request body must be JSON (Content-Type: application/json).")
    body = read_body(request)
    try:
        return decode_object(body)
    except BodyRejected as rejected:
        raise BadRequest(rejected.message) from None


def parse_credentials_form(request: HttpRequest) -> dict[str, Any]:
    """The token endpoint also takes an OAuth-style form body, held to the JSON body's rule on text."""
    media_type = (request.content_type or "").split(";", 1)[0].strip().lower()
    if media_type == "application/x-www-form-urlencoded":
        read_body(request)
        form = dict(request.POST.items())
        # %00 decodes to NUL, which PostgreSQL refuses in the user lookup (a 500 otherwise).
        if any(_BAD_CHAR_RE.search(text) for pair in form.items() for text in pair):
            raise BadRequest(BAD_TEXT)
        return form
    return parse_json_object(request)
