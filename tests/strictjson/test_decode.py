"""The request-body parser both backends use (strictjson): the corpus, then properties."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strictjson import (
    BAD_TEXT,
    DUPLICATE_KEY,
    MAX_DEPTH,
    TOO_DEEP,
    BodyRejected,
    decode_object,
)
from tests.support import hostile_bodies
from tests.support.hostile_bodies import ACCEPTED, HOSTILE, Hostile


@pytest.mark.parametrize("hostile", HOSTILE, ids=[h.name for h in HOSTILE])
def test_refuses_hostile_bodies(hostile: Hostile) -> None:
    with pytest.raises(BodyRejected) as refused:
        decode_object(hostile.body)
    assert refused.value.message == hostile.message


@pytest.mark.parametrize(("body", "value"), [(b, v) for _, b, v in ACCEPTED], ids=[n for n, _, _ in ACCEPTED])
def test_accepts_bodies_at_the_edge_of_each_rule(body: bytes, value: dict[str, Any]) -> None:
    assert decode_object(body) == value


def test_the_corpus_bound_is_the_parser_bound() -> None:
    assert (hostile_bodies.MAX_DEPTH, hostile_bodies.TOO_DEEP) == (MAX_DEPTH, TOO_DEEP)


# Text that trips naive scanners: quotes, backslashes, brackets, escape look-alikes, NUL, surrogates.
_LOOK_ALIKES = [
    '"',
    "\\",
    "\\\\",
    "[",
    "]",
    "{",
    "}",
    "u",
    "d800",
    "0000",
    "\\u0000",
    "\\ud800",
    "a",
    "가",
    "👍",
]
_REAL = ["\x00", "\ud800", "\udbff", "\udc00", "\udfff", "\ud83d", "\udc4d", "\x1f"]
_PIECES = st.sampled_from([*_LOOK_ALIKES, *_REAL])
_TEXT = st.lists(_PIECES, max_size=12).map("".join)
_LEAVES = st.none() | st.booleans() | st.integers(-(10**30), 10**30) | _TEXT
_VALUES = st.recursive(
    _LEAVES,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_TEXT, inner, max_size=4),
    max_leaves=20,
)


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    return 0


def _strings(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [*value, *(s for v in value.values() for s in _strings(v))]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return [value] if isinstance(value, str) else []


def _expected(text: str) -> str | None:
    """What the parser must answer, worked out the slow, obvious way from the stdlib's reading."""
    repeated = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        repeated.append(len(dict(items)) != len(items))
        return dict(items)

    value = json.loads(text, object_pairs_hook=pairs)  # what the body means (escaped pairs joined)
    if _depth(value) > MAX_DEPTH:
        return TOO_DEEP
    if any(repeated):  # two surrogates and the emoji they pair into: two dict keys, one once decoded
        return DUPLICATE_KEY
    if any(ch == "\x00" or "\ud800" <= ch <= "\udfff" for s in _strings(value) for ch in s):
        return BAD_TEXT
    return None


def _answer(body: bytes) -> str | None:
    try:
        decode_object(body)
    except BodyRejected as refused:
        return refused.message
    return None


@settings(max_examples=300, deadline=None)
@given(
    value=_VALUES,
    wrap=st.integers(0, MAX_DEPTH + 3) | st.integers(MAX_DEPTH - 8, MAX_DEPTH),  # often near the bound
    ascii_only=st.booleans(),
)
def test_depth_and_text_rules_match_the_obvious_reading(value: Any, wrap: int, ascii_only: bool) -> None:
    for _ in range(wrap):
        value = [value]
    document = {"v": value}
    text = json.dumps(document, ensure_ascii=ascii_only)
    try:
        body = text.encode("utf-8")
    except UnicodeEncodeError:  # a raw surrogate: not UTF-8, so refused as such
        body = text.encode("utf-8", "surrogatepass")
        assert _answer(body) == "The request body is not valid JSON."
        return
    assert _answer(body) == _expected(text)  # numbers are short: no other rule can apply
