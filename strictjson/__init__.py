"""Decoding a request body into a JSON object, refusing what no endpoint should have to handle.

``decode_object(body)`` returns the object or raises ``BodyRejected`` whose message the client
sees in a 400 ``bad_request`` (docs/api.md, "Request bodies"). In this order, it refuses: anything
but strict UTF-8 (encoded surrogates included); nesting deeper than ``MAX_DEPTH``, counted on the
text before parsing so that no recursion ever goes deeper; while parsing, whichever comes first of a
syntax error (a leading BOM, ``NaN`` and ``Infinity`` included), a number longer than
``MAX_NUMBER_LENGTH`` characters or beyond a double, and a key repeated within one object (parsers
disagree on which one wins); any top level but an object; and any key or string holding an unpaired
surrogate (it cannot be written as UTF-8, stored or rendered) or NUL (PostgreSQL cannot store it).

One package for the monolith and the services (which may not import each other), so that both
backends refuse the same bodies with the same messages. Standard library only (import-linter).
"""

from __future__ import annotations

import json
import math
import re
from itertools import accumulate
from typing import Any

MAX_DEPTH = 32
MAX_NUMBER_LENGTH = 100

NOT_JSON = "The request body is not valid JSON."
NOT_OBJECT = "The request body must be a JSON object."
TOO_DEEP = f"The request body is nested deeper than {MAX_DEPTH} levels."
BAD_TEXT = "The request body holds a string with an unpaired surrogate or a NUL character."
BAD_NUMBER = "The request body holds a number that is too long or out of range."
DUPLICATE_KEY = "The request body repeats a key within one object."

# A JSON string, or an unterminated one running to the end of the text: with the closing quote
# optional, an open string is one match instead of a retry from every later quote (quadratic).
_STRING_RE = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?', re.DOTALL)
_NOT_BRACKET_RE = re.compile(r"[^\[\]{}]+")
_BRACKET_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}
# Escapes that can produce a surrogate or NUL (raw ones are already refused by strict UTF-8).
_SUSPECT_ESCAPE_RE = re.compile(r"\\u(?:0000|[dD][89a-fA-F])")
_SURROGATE_RE = re.compile("[\ud800-\udfff]")
_NUL_ESCAPE_RE = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


class BodyRejected(ValueError):
    """The body is not one the API accepts; ``message`` is what the client is told."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _too_deep(text: str) -> bool:
    """Whether brackets outside strings open more than ``MAX_DEPTH`` levels at some point."""
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return False  # every body a client really sends ends here
    brackets = _NOT_BRACKET_RE.sub("", _STRING_RE.sub("", text))
    # Running depth over the brackets, in C-level iterators: no Python loop per byte.
    return max(accumulate(map(_BRACKET_STEP.__getitem__, brackets)), default=0) > MAX_DEPTH


def _reject_constant(name: str) -> Any:
    raise BodyRejected(NOT_JSON)  # NaN, Infinity, -Infinity: not JSON, though Python reads them


def _int(text: str) -> int:
    if len(text) > MAX_NUMBER_LENGTH:
        raise BodyRejected(BAD_NUMBER)
    return int(text)


def _float(text: str) -> float:
    if len(text) > MAX_NUMBER_LENGTH:
        raise BodyRejected(BAD_NUMBER)
    value = float(text)
    if not math.isfinite(value):  # 1e309 and beyond read as inf
        raise BodyRejected(BAD_NUMBER)
    return value


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise BodyRejected(DUPLICATE_KEY)
    return obj


_DECODER = json.JSONDecoder(
    object_pairs_hook=_object, parse_int=_int, parse_float=_float, parse_constant=_reject_constant
)


def _has_bad_text(data: dict[str, Any]) -> bool:
    """Whether any key or string, at any depth, holds a surrogate or NUL: one C-speed pass, no Python loop.

    ``json.dumps(ensure_ascii=False)`` leaves surrogates as they are and writes NUL as the escape
    ``\\u0000``; an escape is real when an even run of backslashes (escaped backslashes) precedes it.
    """
    dumped = json.dumps(data, ensure_ascii=False)
    return _SURROGATE_RE.search(dumped) is not None or _NUL_ESCAPE_RE.search(dumped) is not None


def decode_object(body: bytes) -> dict[str, Any]:
    """The JSON object in ``body``, or ``BodyRejected``; checks run in a fixed order (docs/api.md)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BodyRejected(NOT_JSON) from None
    if _too_deep(text):
        raise BodyRejected(TOO_DEEP)
    try:
        data = _DECODER.decode(text)
    except BodyRejected:
        raise
    except RecursionError:  # unreachable after _too_deep; kept so that nothing here can be a 500
        raise BodyRejected(TOO_DEEP) from None
    except ValueError:  # JSONDecodeError, including a leading BOM
        raise BodyRejected(NOT_JSON) from None
    if not isinstance(data, dict):
        raise BodyRejected(NOT_OBJECT)
    if _SUSPECT_ESCAPE_RE.search(text) and _has_bad_text(data):
        raise BodyRejected(BAD_TEXT)
    return data
