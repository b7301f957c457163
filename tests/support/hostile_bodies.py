"""Request bodies no JSON endpoint may accept, each with the 400 message both backends must answer.

Shared by the parser unit tests of each backend and the contract test that sends them to both
(docs/api.md, "Request bodies"). Every body is sent as ``Content-Type: application/json``. A review
body names item 39, which the parity corpus never writes to: a backend without these rules would
create a review there (or fail with a 500) instead of answering 400.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_DEPTH = 32

NOT_JSON = "The request body is not valid JSON."
NOT_OBJECT = "The request body must be a JSON object."
TOO_DEEP = f"The request body is nested deeper than {MAX_DEPTH} levels."
BAD_TEXT = "The request body holds a string with an unpaired surrogate or a NUL character."
BAD_NUMBER = "The request body holds a number that is too long or out of range."
DUPLICATE_KEY = "The request body repeats a key within one object."


@dataclass(frozen=True, kw_only=True, slots=True)
class Hostile:
    name: str
    body: bytes
    message: str


def _review(extra: str = "", body: str = "x") -> bytes:
    """A review that would otherwise be valid, with ``extra`` members spliced in (raw JSON text)."""
    return ('{"item_id":39,"rating":5,"body":"' + body + '"' + extra + "}").encode()


def _nested(depth: int) -> str:
    """``depth`` arrays nested in one another: ``[[[]]]`` is 3."""
    return "[" * depth + "]" * depth


HOSTILE = (
    # Nesting: the depth is counted before parsing, so no recursion ever goes deeper than the bound.
    Hostile(name="open-arrays-100k", body=b"[" * 100_000, message=TOO_DEEP),
    Hostile(name="closed-arrays-100k", body=b"[" * 100_000 + b"]" * 100_000, message=TOO_DEEP),
    Hostile(name="open-objects-100k", body=b'{"a":' * 100_000, message=TOO_DEEP),
    Hostile(name="closed-objects-10k", body=b'{"a":' * 10_000 + b"1" + b"}" * 10_000, message=TOO_DEEP),
    Hostile(name="depth-33", body=_review(',"extra":' + _nested(MAX_DEPTH)), message=TOO_DEEP),
    Hostile(name="depth-1000-in-a-field", body=_review(',"extra":' + _nested(1000)), message=TOO_DEEP),
    Hostile(name="deep-top-level-array", body=_nested(MAX_DEPTH + 1).encode(), message=TOO_DEEP),
    Hostile(name="deep-and-truncated", body=b"[" * 950, message=TOO_DEEP),
    # Strings: an unpaired surrogate cannot be stored or rendered as UTF-8; PostgreSQL refuses NUL.
    Hostile(name="lone-high-surrogate", body=_review(body="\\ud800"), message=BAD_TEXT),
    Hostile(name="lone-low-surrogate", body=_review(body="\\udfff"), message=BAD_TEXT),
    Hostile(name="reversed-surrogate-pair", body=_review(body="\\udc00\\ud800"), message=BAD_TEXT),
    Hostile(name="high-surrogate-at-the-end", body=_review(body="ok \\uD83D"), message=BAD_TEXT),
    Hostile(name="surrogate-in-a-key", body=_review(',"\\ud800":1'), message=BAD_TEXT),
    Hostile(
        name="surrogate-deep-in-an-ignored-field",
        body=_review(',"tags":[["ok",{"k":"\\uDBFF"}]]'),
        message=BAD_TEXT,
    ),
    Hostile(name="nul-in-body", body=_review(body="a\\u0000b"), message=BAD_TEXT),
    Hostile(name="nul-after-an-escaped-backslash", body=_review(body="\\\\\\u0000"), message=BAD_TEXT),
    Hostile(name="nul-in-a-key", body=_review(',"\\u0000":1'), message=BAD_TEXT),
    # Encoding: UTF-8 only, strictly (no BOM, no encoded surrogates, no overlong forms).
    Hostile(
        name="encoded-surrogate", body=b'{"item_id":39,"rating":5,"body":"\xed\xa0\x80"}', message=NOT_JSON
    ),
    Hostile(name="invalid-utf8-byte", body=b'{"item_id":39,"rating":5,"body":"\xff"}', message=NOT_JSON),
    Hostile(name="overlong-utf8", body=b'{"item_id":39,"rating":5,"body":"\xc0\xaf"}', message=NOT_JSON),
    Hostile(name="truncated-utf8", body=b'{"item_id":39,"rating":5,"body":"\xe4\xb8"}', message=NOT_JSON),
    Hostile(
        name="latin-1", body='{"item_id":39,"rating":5,"body":"café"}'.encode("latin-1"), message=NOT_JSON
    ),
    Hostile(name="utf8-bom", body=b"\xef\xbb\xbf" + _review(), message=NOT_JSON),
    Hostile(name="utf16", body='{"item_id":39,"rating":5,"body":"x"}'.encode("utf-16"), message=NOT_JSON),
    # Grammar.
    Hostile(name="empty", body=b"", message=NOT_JSON),
    Hostile(name="whitespace-only", body=b" \r\n\t", message=NOT_JSON),
    Hostile(name="truncated", body=b'{"item_id":39,"rating":', message=NOT_JSON),
    Hostile(name="trailing-garbage", body=_review() + b" x", message=NOT_JSON),
    Hostile(name="two-objects", body=_review() + _review(), message=NOT_JSON),
    Hostile(name="single-quotes", body=b"{'item_id':39,'rating':5,'body':'x'}", message=NOT_JSON),
    Hostile(name="trailing-comma", body=_review(","), message=NOT_JSON),
    Hostile(name="raw-control-character", body=_review(body="a\tb"), message=NOT_JSON),
    Hostile(name="unterminated-string-with-brackets", body=b'{"body":"' + b"[" * 100, message=NOT_JSON),
    Hostile(name="nan", body=b'{"item_id":39,"rating":NaN,"body":"x"}', message=NOT_JSON),
    Hostile(name="infinity", body=b'{"item_id":39,"rating":Infinity,"body":"x"}', message=NOT_JSON),
    Hostile(name="minus-infinity", body=b'{"item_id":39,"rating":-Infinity,"body":"x"}', message=NOT_JSON),
    # Numbers: beyond a double, or longer than any real value (Python refuses 4300+ digit ints anyway).
    Hostile(
        name="float-overflow-1e999999",
        body=b'{"item_id":39,"rating":1e999999,"body":"x"}',
        message=BAD_NUMBER,
    ),
    Hostile(
        name="float-overflow-1e309", body=b'{"item_id":39,"rating":1e309,"body":"x"}', message=BAD_NUMBER
    ),
    Hostile(
        name="negative-float-overflow", body=b'{"item_id":39,"rating":-1e400,"body":"x"}', message=BAD_NUMBER
    ),
    Hostile(
        name="int-100k-digits",
        body=b'{"item_id":' + b"9" * 100_000 + b',"rating":5,"body":"x"}',
        message=BAD_NUMBER,
    ),
    Hostile(
        name="int-101-digits",
        body=b'{"item_id":1' + b"0" * 100 + b',"rating":5,"body":"x"}',
        message=BAD_NUMBER,
    ),
    Hostile(
        name="float-101-characters",
        body=b'{"item_id":39,"rating":0.' + b"0" * 98 + b'5,"body":"x"}',
        message=BAD_NUMBER,
    ),
    # Keys: parsers disagree on which duplicate wins, so none is accepted.
    Hostile(name="duplicate-key", body=_review(',"rating":1'), message=DUPLICATE_KEY),
    Hostile(name="duplicate-nested-key", body=_review(',"extra":{"a":1,"a":1}'), message=DUPLICATE_KEY),
    # Top level.
    Hostile(name="top-level-array", body=b'[{"item_id":39,"rating":5,"body":"x"}]', message=NOT_OBJECT),
    Hostile(name="top-level-string", body=b'"review"', message=NOT_OBJECT),
    Hostile(name="top-level-number", body=b"39", message=NOT_OBJECT),
    Hostile(name="top-level-null", body=b"null", message=NOT_OBJECT),
    Hostile(name="top-level-true", body=b"true", message=NOT_OBJECT),
    Hostile(name="top-level-array-with-surrogate", body=b'["\\ud800"]', message=NOT_OBJECT),
)


def _nested_value(depth: int) -> list[object]:
    value: list[object] = []
    for _ in range(depth - 1):
        value = [value]
    return value


# Bodies at the edge of every rule that must still parse: (name, body, the value it parses to).
ACCEPTED: tuple[tuple[str, bytes, dict[str, object]], ...] = (
    ("empty-object", b"{}", {}),
    ("surrounding-whitespace", b' \r\n\t{"a":1} \n', {"a": 1}),
    ("depth-32", ('{"a":' + _nested(MAX_DEPTH - 1) + "}").encode(), {"a": _nested_value(MAX_DEPTH - 1)}),
    (
        "brackets-in-a-string",
        ('{"b":"' + "[" * 100 + "{" * 100 + '"}').encode(),
        {"b": "[" * 100 + "{" * 100},
    ),
    (
        "brackets-after-an-escaped-quote",
        ('{"b":"\\"' + "[" * 40 + '\\\\"}').encode(),
        {"b": '"' + "[" * 40 + "\\"},
    ),
    ("surrogate-pair", b'{"b":"\\ud83d\\udc4d"}', {"b": "\U0001f44d"}),
    ("escaped-backslash-before-u-d800", b'{"b":"\\\\ud800"}', {"b": "\\ud800"}),
    ("escaped-backslash-before-u0000", b'{"b":"\\\\u0000"}', {"b": "\\u0000"}),
    ("control-escapes-other-than-nul", b'{"b":"\\u0001\\u001f"}', {"b": "\x01\x1f"}),
    ("korean-and-emoji", '{"b":"배송이 빨라요 👍"}'.encode(), {"b": "배송이 빨라요 👍"}),
    ("int-100-digits", b'{"n":' + b"9" * 100 + b"}", {"n": int("9" * 100)}),
    ("largest-float", b'{"n":1.7976931348623157e308}', {"n": 1.7976931348623157e308}),
    ("negative-zero-and-exponents", b'{"a":-0,"b":-0.0,"c":1E-400}', {"a": 0, "b": -0.0, "c": 0.0}),
    ("same-key-in-sibling-objects", b'{"a":{"k":1},"b":{"k":2}}', {"a": {"k": 1}, "b": {"k": 2}}),
)
