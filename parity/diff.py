"""Compare the control's and the candidate's answer to one request.

A match means: same status, same values for the headers that matter, and the
same body bytes.  One documented rule may relax the bytes: timestamps written
during the run (at or after ``fresh_after``) differ by when each backend handled
the write, so a fresh timestamp on both sides compares equal (docs/parity.md).
Differences are named by where they are: ``status``, ``header:location``, or a
JSON Pointer into the body (``body:/items/0/rating``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

HEADERS_THAT_MATTER = ("content-type", "cache-control", "location", "allow", "www-authenticate")
FRESH = "<fresh timestamp>"
_TIMESTAMP = re.compile(rb'"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)"')


@dataclass(frozen=True, kw_only=True, slots=True)
class Observation:
    status: int
    headers: Mapping[str, str]
    body: bytes

    @classmethod
    def of(cls, status: int, headers: Mapping[str, str], body: bytes) -> Observation:
        lowered = {name.lower(): value for name, value in headers.items()}
        return cls(
            status=status, headers={h: lowered[h] for h in HEADERS_THAT_MATTER if h in lowered}, body=body
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class Difference:
    where: str
    control: str
    candidate: str

    def __str__(self) -> str:
        return f"{self.where}: control {self.control} != candidate {self.candidate}"


def mask_fresh_timestamps(body: bytes, fresh_after: datetime | None) -> bytes:
    if fresh_after is None:
        return body
    threshold = fresh_after.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ").encode()

    def mask(match: re.Match[bytes]) -> bytes:
        return f'"{FRESH}"'.encode() if match.group(1) >= threshold else match.group(0)

    return _TIMESTAMP.sub(mask, body)


def _show(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 200 else text[:197] + "..."


def _walk(control: Any, candidate: Any, pointer: str, out: list[Difference]) -> None:
    if type(control) is not type(candidate):
        out.append(
            Difference(where=f"body:{pointer or '/'}", control=_show(control), candidate=_show(candidate))
        )
    elif isinstance(control, dict):
        if list(control) != list(candidate) and set(control) == set(candidate):
            out.append(
                Difference(
                    where=f"body:{pointer or '/'} (key order)",
                    control=_show(list(control)),
                    candidate=_show(list(candidate)),
                )
            )
        for key in [*control, *(key for key in candidate if key not in control)]:
            child = f"{pointer}/{str(key).replace('~', '~0').replace('/', '~1')}"
            if key not in candidate:
                out.append(
                    Difference(where=f"body:{child}", control=_show(control[key]), candidate="(missing)")
                )
            elif key not in control:
                out.append(
                    Difference(where=f"body:{child}", control="(missing)", candidate=_show(candidate[key]))
                )
            else:
                _walk(control[key], candidate[key], child, out)
    elif isinstance(control, list):
        if len(control) != len(candidate):
            out.append(
                Difference(
                    where=f"body:{pointer}/length", control=str(len(control)), candidate=str(len(candidate))
                )
            )
        for index, (a, b) in enumerate(zip(control, candidate, strict=False)):
            _walk(a, b, f"{pointer}/{index}", out)
    elif control != candidate:
        out.append(
            Difference(where=f"body:{pointer or '/'}", control=_show(control), candidate=_show(candidate))
        )


def _body_differences(control: bytes, candidate: bytes) -> list[Difference]:
    try:
        parsed = json.loads(control), json.loads(candidate)
    except ValueError:
        parsed = None
    out: list[Difference] = []
    if parsed is not None:
        _walk(parsed[0], parsed[1], "", out)
    if not out:
        offset = next(
            (i for i, (a, b) in enumerate(zip(control, candidate, strict=False)) if a != b),
            min(len(control), len(candidate)),
        )
        out.append(
            Difference(
                where=f"body bytes at offset {offset}",
                control=repr(control[max(0, offset - 20) : offset + 40]),
                candidate=repr(candidate[max(0, offset - 20) : offset + 40]),
            )
        )
    return out


def compare(
    control: Observation, candidate: Observation, *, fresh_after: datetime | None = None
) -> list[Difference]:
    """Every difference between the two observations; an empty list is a match."""
    out: list[Difference] = []
    if control.status != candidate.status:
        out.append(Difference(where="status", control=str(control.status), candidate=str(candidate.status)))
    for header in HEADERS_THAT_MATTER:
        a, b = control.headers.get(header), candidate.headers.get(header)
        if a != b:
            out.append(Difference(where=f"header:{header}", control=repr(a), candidate=repr(b)))
    a_body = mask_fresh_timestamps(control.body, fresh_after)
    b_body = mask_fresh_timestamps(candidate.body, fresh_after)
    if a_body != b_body:
        out.extend(_body_differences(a_body, b_body))
    return out
