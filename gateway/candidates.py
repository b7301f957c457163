"""Next routes to strangle: what every legacy endpoint costs legacy, per path template and method.

Every request legacy serves is counted under its template: a hot route's own (``/api/v1/reviews/items/
{item_id}``, marked with its route id), or, for a path no hot route matches, the path with ids folded
(``fold``: all-digit segments → ``{id}``, UUIDs → ``{uuid}``, long alphanumeric tokens with a digit →
``{token}``; no regex, one ``split``). Per template: requests, errors (5xx), signed-in requests, the
time legacy spent (the sum of the durations) and a latency histogram (gateway/live.py's bounds, for
p50 and p99). Every request, whoever served it, counts in the total (for each template's share).

Memory is bounded: figures are kept in ``SLICES`` slices of ``SLICE_SECONDS`` (the last hour), each
with at most ``MAX_TEMPLATES`` templates. When a slice is full, its less requested half (hot routes
excepted) is folded into one ``(other templates)`` entry, so a scanner's 100,000 random paths cost
the same memory as 256 and the endpoints that matter stay. Recording costs a dict lookup, a few
additions and a bisect.

With several workers each one writes its slices to ``<dir>/candidates-<pid>.json`` every
``PUBLISH_SECONDS``; ``summary`` sums them with this worker's own. ``gateway candidates`` (``cli``)
prints the ranking from the admin API.
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import json
import os
import re
import sys
import time
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from gateway.live import BOUNDS, quantile

SLICE_SECONDS = 300
SLICES = 12  # one hour
MAX_TEMPLATES = 256  # per slice, hot routes and the "other" entry aside
MAX_TEMPLATE_CHARS = 120
PUBLISH_SECONDS = 5
OTHER = ("*", "(other templates)")
FILE_PREFIX = "candidates-"
_DURATION = re.compile(r"(\d+)([smh])")
_UNITS = {"s": 1, "m": 60, "h": 3600}

# One template's figures: requests, errors, signed in, legacy seconds, histogram, hot route id or None.
Entry = list[Any]


def fold(path: str) -> str:
    """``/api/v1/items/42/reviews`` → ``/api/v1/items/{id}/reviews``: the template of an unmatched path."""
    segments = path.split("/")
    for index, segment in enumerate(segments):
        if segment.isdigit():
            segments[index] = "{id}"
        elif len(segment) == 36 and segment[8] == segment[13] == segment[18] == segment[23] == "-":
            segments[index] = "{uuid}"
        elif len(segment) >= 16 and segment.isalnum() and not segment.isalpha():
            segments[index] = "{token}"
    return "/".join(segments)[:MAX_TEMPLATE_CHARS]


class _Slice:
    __slots__ = ("start", "stats", "total")

    def __init__(self, start: int) -> None:
        self.start = start
        self.total = 0  # every request the gateway answered in the slice
        self.stats: dict[tuple[str, str], Entry] = {}


def _prune(stats: dict[tuple[str, str], Entry]) -> None:
    """Fold the less requested half of the templates (hot routes and "other" kept) into "other"."""
    other = stats.setdefault(OTHER, [0, 0, 0, 0.0, {}, None])
    movable = sorted((entry[0], key) for key, entry in stats.items() if key != OTHER and entry[5] is None)
    for _, key in movable[: max(1, len(movable) // 2)]:
        _merge(other, stats.pop(key))


def _merge(into: Entry, entry: Entry) -> None:
    for column in range(4):
        into[column] += entry[column]
    histogram = into[4]
    for index, count in entry[4].items():
        histogram[int(index)] = histogram.get(int(index), 0) + count


def _rows(piece: _Slice) -> list[Any]:
    stats = piece.stats
    return [
        piece.start,
        piece.total,
        [[m, t, e[5], e[0], e[1], e[2], e[3], dict(e[4])] for (m, t), e in stats.items()],
    ]


class Candidates:
    def __init__(
        self,
        directory: Path | None = None,
        *,
        max_templates: int = MAX_TEMPLATES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.directory = directory
        self.max_templates = max_templates
        self.clock = clock
        self._slices: deque[_Slice] = deque(maxlen=SLICES)
        self._closed: dict[int, str] = {}  # slice start → its JSON, once a newer slice began

    def _slice(self) -> _Slice:
        start = int(self.clock()) // SLICE_SECONDS * SLICE_SECONDS
        slices = self._slices
        if not slices or slices[-1].start != start:
            slices.append(_Slice(start))
        return slices[-1]

    def count(self) -> None:
        """A request legacy did not serve: only the total grows."""
        self._slice().total += 1

    def record(
        self, method: str, template: str, hot: str | None, status: int, seconds: float, signed_in: bool
    ) -> None:
        """A request legacy served (``hot``: the route id when a hot route matched)."""
        current = self._slice()
        current.total += 1
        stats = current.stats
        key = (method, template)
        entry = stats.get(key)
        if entry is None:
            if hot is None and len(stats) >= self.max_templates:
                _prune(stats)
            entry = stats[key] = [0, 0, 0, 0.0, {}, hot]
        entry[0] += 1
        entry[1] += status >= 500
        entry[2] += signed_in
        entry[3] += seconds
        histogram = entry[4]
        index = bisect.bisect_left(BOUNDS, seconds)
        histogram[index] = histogram.get(index, 0) + 1

    def own(self) -> list[list[Any]]:
        """This worker's slices as JSON-ready rows (copied: safe to read in a thread)."""
        return [_rows(piece) for piece in self._slices]

    def templates(self) -> int:
        return sum(len(piece.stats) for piece in self._slices)

    def document(self) -> str:
        """This worker's file as JSON text, built on the loop that records: a slice that is not the
        newest never changes again, so it is encoded once; only the newest is encoded each time."""
        newest = self._slices[-1].start if self._slices else None
        parts = []
        for piece in self._slices:
            if piece.start == newest:
                parts.append(json.dumps(_rows(piece)))
                continue
            if piece.start not in self._closed:
                self._closed[piece.start] = json.dumps(_rows(piece))
            parts.append(self._closed[piece.start])
        kept = {piece.start for piece in self._slices}
        self._closed = {start: text for start, text in self._closed.items() if start in kept}
        return '{"slices": [' + ", ".join(parts) + "]}"

    def write(self, document: str) -> None:
        """Replace this worker's file with ``document`` (I/O: the gateway calls it in a thread)."""
        if self.directory is None:
            return
        path = self.directory / f"{FILE_PREFIX}{os.getpid()}.json"
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(document, encoding="utf-8")
        os.replace(tmp, path)

    def publish(self) -> None:
        if self.directory is not None:
            self.write(self.document())

    def forget(self) -> None:
        if self.directory is not None:
            with contextlib.suppress(FileNotFoundError):
                (self.directory / f"{FILE_PREFIX}{os.getpid()}.json").unlink()

    def _workers(self, own: list[list[Any]]) -> list[list[list[Any]]]:
        workers = [own]
        if self.directory is None:
            return workers
        horizon = self.clock() - SLICES * SLICE_SECONDS
        mine = f"{FILE_PREFIX}{os.getpid()}.json"
        for path in self.directory.glob(f"{FILE_PREFIX}*.json"):
            try:
                if path.name == mine or path.stat().st_mtime < horizon:
                    continue
                slices = json.loads(path.read_text(encoding="utf-8"))["slices"]
                if isinstance(slices, list):
                    workers.append(slices)
            except (OSError, ValueError, KeyError, TypeError):
                continue  # being replaced: the next read has it
        return workers

    def summary(self, since: float, limit: int, own: list[list[Any]] | None = None) -> dict[str, Any]:
        """The templates legacy served over about the last ``since`` seconds (whole slices), every
        worker summed, ranked by legacy time then errors. With ``own`` it reads only files."""
        horizon = self.clock() - since
        totals: dict[tuple[str, str], Entry] = {}
        requests, workers = 0, 0
        for slices in self._workers(self.own() if own is None else own):
            seen = False
            for start, total, rows in slices:
                if start + SLICE_SECONDS <= horizon:
                    continue
                seen = True
                requests += total
                for method, template, hot, *figures in rows:
                    entry = totals.setdefault((method, template), [0, 0, 0, 0.0, {}, hot])
                    _merge(entry, figures)
            workers += seen
        other = totals.pop(OTHER, None)
        ranked = sorted(totals.items(), key=lambda item: (-item[1][3], -item[1][1], item[0]))
        return {
            "since_seconds": since,
            "requests": requests,
            "workers": workers,
            "templates": len(totals),
            "max_templates_per_slice": self.max_templates,
            "candidates": [_row(key, entry, requests) for key, entry in ranked[:limit]],
            "other": _row(OTHER, other, requests) if other is not None else None,
        }


def _row(key: tuple[str, str], entry: Entry, total: int) -> dict[str, Any]:
    requests, errors, signed_in, seconds, histogram, hot = entry
    return {
        "method": key[0],
        "template": key[1],
        "hot_route": hot,
        "requests": requests,
        "share": round(requests / total, 4) if total else 0.0,
        "legacy_seconds": round(seconds, 3),
        "p50_ms": round(quantile(histogram, requests, 0.50) * 1000, 2),
        "p99_ms": round(quantile(histogram, requests, 0.99) * 1000, 2),
        "error_rate": round(errors / requests, 4) if requests else 0.0,
        "errors": errors,
        "signed_in_share": round(signed_in / requests, 4) if requests else 0.0,
    }


def since_seconds(raw: str) -> float | None:
    """``30m``, ``1h``, ``90s`` or plain seconds, at most the hour kept; None when it is none of those."""
    raw = raw.strip()
    match = _DURATION.fullmatch(raw)
    seconds = int(match.group(1)) * _UNITS[match.group(2)] if match else int(raw) if raw.isdigit() else 0
    return float(seconds) if 0 < seconds <= SLICES * SLICE_SECONDS else None


def cli(argv: list[str], env: Mapping[str, str] = os.environ) -> int:
    """``gateway candidates``: the ranking, from the running gateway's admin API."""
    import httpx
    from rich.console import Console
    from rich.table import Table

    port = env.get("GATEWAY_PORT", "8000")
    parser = argparse.ArgumentParser(
        prog="gateway candidates",
        description="Legacy endpoints ranked by the time legacy spends on them (requests x latency), then "
        "errors, over every gateway worker; hot routes marked. Reads the running gateway's admin API.",
    )
    parser.add_argument("--since", default="1h", help="window, e.g. 15m or 1h (at most 1h)")
    parser.add_argument("--limit", type=int, default=20, help="rows (default 20)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--url", default=env.get("GATEWAY_URL", f"http://127.0.0.1:{port}"))
    options = parser.parse_args(argv)
    since = since_seconds(options.since)
    if since is None or not 1 <= options.limit <= 500:
        print("gateway candidates: --since takes 1s to 1h (e.g. 15m), --limit 1 to 500", file=sys.stderr)
        return 2
    token = env.get("GATEWAY_ADMIN_TOKEN") or "dev-only-admin-token"
    try:
        answer = httpx.get(
            f"{options.url.rstrip('/')}/_gateway/admin/candidates",
            params={"since": str(int(since)), "limit": str(options.limit)},
            headers={"Authorization": f"Bearer {token}"},
            timeout=5,
        )
    except httpx.HTTPError as exc:
        print(f"gateway candidates: cannot reach the gateway at {options.url}: {exc}", file=sys.stderr)
        return 2
    if answer.status_code != 200:
        print(f"gateway candidates: {answer.status_code} {answer.text[:300]}", file=sys.stderr)
        return 2
    document = answer.json()
    if options.json:
        print(json.dumps(document, indent=2))
        return 0
    table = Table(
        title=f"Legacy endpoints by legacy time, last {options.since} "
        f"({document['requests']:,} requests, {document['workers']} worker(s))"
    )
    for column in ("#", "method", "template", "hot route", "requests", "share", "legacy s", "p50 ms",
                   "p99 ms", "errors", "signed in"):  # fmt: skip
        table.add_column(column)
    rows = document["candidates"] + ([document["other"]] if document["other"] else [])
    for rank, row in enumerate(rows, start=1):
        table.add_row(
            str(rank) if row["method"] != OTHER[0] else "",
            row["method"],
            row["template"],
            row["hot_route"] or "",
            f"{row['requests']:,}",
            f"{row['share']:.1%}",
            f"{row['legacy_seconds']:,.1f}",
            f"{row['p50_ms']:g}",
            f"{row['p99_ms']:g}",
            f"{row['error_rate']:.1%}",
            f"{row['signed_in_share']:.0%}",
        )
    Console().print(table)
    return 0
