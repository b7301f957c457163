"""Route matching and path safety (gateway/routes.py) on request targets httptools accepts.

Invariants: ``unsafe_path`` and ``RouteTable.match`` never raise; a path called safe has, once
decoded as the server decodes it, no ``.``/``..`` or empty segment (but a trailing slash), no NUL,
``/`` or ``\\`` smuggled in by percent-encoding; a matched route's template fits the path segment by
segment (literals equal, parameters non-empty).
"""

from __future__ import annotations

from urllib.parse import unquote

import atheris
import httptools

from flags.routes_file import SHIPPED_ROUTES_FILE
from gateway.routes import load_table, unsafe_path

TABLE = load_table(SHIPPED_ROUTES_FILE, {})
METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")
TOKENS = (
    *(b"/", b".", b"..", b"%2e", b"%2E", b"%2f", b"%2F", b"%5c", b"%5C", b"%00", b"\\", b"%", b"%25", b"%20"),
    *(b"?", b"#", b";", b"~", b"=", b"&", b"-", b"_", b"%41", b"%e2%80%a8", b"http://x", b"*"),
    *(b"api", b"v1", b"reviews", b"items", b"1", b"01", b"0", b"123456789012345678901", b"me", b"summary"),
    *(b"helpful", b"recommendations", b"home", b"similar", b"recently-viewed", b"catalog", b"orders"),
)


class _Target:
    def __init__(self) -> None:
        self.url = b""

    def on_url(self, url: bytes) -> None:
        self.url += url


def parsed_path(target: bytes) -> bytes | None:
    """The raw path httptools hands the server for this request target, or None if it refuses it."""
    sink = _Target()
    try:
        httptools.HttpRequestParser(sink).feed_data(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        return httptools.parse_url(sink.url).path
    except (httptools.HttpParserError, httptools.HttpParserInvalidURLError):
        return None


def check(method: str, raw_path: bytes) -> None:
    unsafe = unsafe_path(raw_path)
    path = unquote(raw_path.decode("latin-1"), encoding="latin-1")  # as uvicorn decodes it
    if not unsafe:
        segments = path.split("/")[1:]
        assert all(segment not in ("", ".", "..") for segment in segments[:-1]), (raw_path, path)
        assert segments[-1] not in (".", ".."), (raw_path, path)
        assert "\x00" not in path and "\\" not in path, (raw_path, path)
        assert path.count("/") == raw_path.count(b"/"), (raw_path, path)
    route = TABLE.match(method, path)
    if route is not None:
        assert method in route.methods, (method, route.id)
        template, segments = route.path.split("/"), path.split("/")
        assert len(template) == len(segments), (route.path, path)
        for part, segment in zip(template, segments, strict=True):
            assert segment if part.startswith("{") else part == segment, (route.path, path)


def one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    method = METHODS[fdp.ConsumeIntInRange(0, len(METHODS) - 1)]
    raw = fdp.ConsumeBytes(fdp.remaining_bytes())
    if raw[:1] == b"\xff":
        target = raw[1:]  # any bytes at all (most are refused by the parser)
    else:
        # Mostly our paths' own pieces and the encodings path safety is about.
        target = b"/" + b"".join(
            TOKENS[byte % len(TOKENS)] if byte < 224 else bytes([byte - 128]) for byte in raw
        )
    raw_path = parsed_path(target)
    if raw_path is not None:
        check(method, raw_path)
