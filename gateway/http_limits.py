"""What both of the gateway's HTTP/1.1 servers enforce (gateway/http1.py, and uvicorn's protocol with
gateway/server.py): request-head limits, per-phase timeouts, a connection cap, and the error answers
they give in the JSON envelope. Pure pieces, no server in here."""

from __future__ import annotations

import http
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, NoReturn

from gateway.errors import envelope

if TYPE_CHECKING:
    from gateway.settings import GatewaySettings


def _status_line(status: int) -> bytes:
    try:
        phrase = http.HTTPStatus(status).phrase.encode()
    except ValueError:
        phrase = b""
    return b"HTTP/1.1 %d %s\r\n" % (status, phrase)


# Every status line, built once.
STATUS_LINE = {status: _status_line(status) for status in range(100, 600)}

# The message of the cancellation that abandons a request whose client left.
ABANDONED = "client closed the connection"

# Where the parser is in the current request. A connection between requests is WAITING.
WAITING, HEAD, BODY = 0, 1, 2

# The request line's method, spaces and version, the final CRLF, and some optional whitespace: what a
# head may hold beyond the URL and the header names and values the other limits count.
_HEAD_SLACK = 1024


@dataclass(frozen=True, kw_only=True, slots=True)
class HttpLimits:
    max_url_bytes: int
    max_header_bytes: int  # names + values of all headers of one request
    max_header_line_bytes: int  # name + value of one header
    max_headers: int
    header_timeout: float  # from a request's first byte to the end of its head
    body_timeout: float  # the longest gap between two pieces of a body the app is waiting for
    idle_timeout: float  # a connection with no request in flight
    max_connections: int  # per worker process

    @classmethod
    def from_settings(cls, settings: GatewaySettings) -> HttpLimits:
        return cls(
            max_url_bytes=settings.max_url_bytes,
            max_header_bytes=settings.max_header_bytes,
            max_header_line_bytes=settings.max_header_line_bytes,
            max_headers=settings.max_headers,
            header_timeout=settings.header_timeout,
            body_timeout=settings.body_timeout,
            idle_timeout=settings.idle_timeout,
            max_connections=settings.max_connections,
        )

    @property
    def max_head_bytes(self) -> int:
        """The most raw bytes a head the other limits admit can take (": " and CRLF per header)."""
        return self.max_url_bytes + self.max_header_bytes + 4 * self.max_headers + _HEAD_SLACK

    @property
    def tick(self) -> float:
        """How often deadlines are checked: a deadline is enforced at most this late."""
        return min(1.0, self.header_timeout / 4, self.body_timeout / 4, self.idle_timeout / 4)


def timeout_for(phase: int, limits: HttpLimits) -> float:
    if phase == HEAD:
        return limits.header_timeout
    if phase == BODY:
        return limits.body_timeout
    return limits.idle_timeout


def error_response(
    status: int, code: str, message: str, request_id: str, headers: tuple[tuple[bytes, bytes], ...] = ()
) -> bytes:
    """A whole HTTP/1.1 response carrying the error envelope; the connection is closed after it."""
    body = json.dumps(envelope(code, message, request_id), separators=(",", ":")).encode()
    lines = [
        STATUS_LINE[status],
        b"content-type: application/json\r\n",
        b"content-length: %d\r\n" % len(body),
        b"x-request-id: %s\r\n" % request_id.encode(),
        b"x-served-by: gateway\r\n",
        b"connection: close\r\n",
        *(name + b": " + value + b"\r\n" for name, value in headers),
        b"\r\n",
        body,
    ]
    return b"".join(lines)


class Refused(Exception):
    """Raised from a parser callback to stop parsing; the protocol keeps the answer to give."""


URL_TOO_LONG = (414, "url_too_long", "The request URL is too long.")
HEADERS_TOO_LARGE = (431, "headers_too_large", "The request headers are too large.")
BAD_REQUEST = (400, "bad_request", "The request could not be parsed.")
TIMEOUT = (408, "request_timeout", "The request was not received in time.")
TOO_MANY_CONNECTIONS = (503, "unavailable", "Too many open connections; retry shortly.")
RETRY_AFTER = ((b"retry-after", b"1"),)


class HeadBudget:
    """What a request head (and a chunked body's trailer fields) may hold, counted as it arrives.

    Both servers keep one per connection and call it from their parser callbacks; a method that
    finds a limit passed raises ``Refused`` (stopping the parser) with the answer in ``refusal``.
    """

    __slots__ = ("_chunk_headers", "_head_bytes", "_header_bytes", "_in_trailer", "limits", "refusal")

    def __init__(self, limits: HttpLimits) -> None:
        self.limits = limits
        self.refusal: tuple[int, str, str] | None = None
        self._head_bytes = 0  # raw bytes received while this request's head (or trailer) is unfinished
        self._header_bytes = 0  # names and values of this request's headers
        self._in_trailer = False  # a chunk size line was read and no data followed yet
        self._chunk_headers = 0  # chunk size lines read on this connection

    def refuse(self, refusal: tuple[int, str, str]) -> NoReturn:
        """Stop the parser; ``refusal`` is the answer."""
        self.refusal = refusal
        raise Refused

    def message_begun(self) -> None:
        self._head_bytes = self._header_bytes = 0
        self._in_trailer = False

    def url(self, size: int) -> None:
        """The URL so far is ``size`` bytes."""
        if size > self.limits.max_url_bytes:
            self.refuse(URL_TOO_LONG)

    def header(self, name: bytes, value: bytes) -> None:
        size = len(name) + len(value)
        if size > self.limits.max_header_line_bytes:
            self.refuse(HEADERS_TOO_LARGE)
        self._header_bytes += size

    def headers_complete(self, count: int) -> None:
        if self._header_bytes > self.limits.max_header_bytes or count > self.limits.max_headers:
            self.refuse(HEADERS_TOO_LARGE)

    def chunk_begun(self) -> None:
        # After the last chunk's size line, trailers may follow: count them like a head until chunk
        # data shows this was not the last chunk.
        self._chunk_headers += 1
        self._in_trailer = True
        self._head_bytes = 0

    def body(self) -> None:
        self._in_trailer = False

    @property
    def chunks_begun(self) -> int:
        return self._chunk_headers

    def over(self, in_head: bool, size: int, chunks_before: int) -> bool:
        """After a read of ``size`` bytes: has the unfinished head (``in_head``) or trailer grown past
        what any head within the limits could have? The parser holds those bytes uncounted by
        ``header``. Only reads wholly inside a trailer (no new chunk began since ``chunks_before``)
        count, so a read ending on a chunk's size line is not taken for one; the read a trailer starts
        in goes uncounted (bounded by one read). For a head, this may count the tail of a pipelined
        previous request too, which only errs on the safe side."""
        if in_head or (self._in_trailer and chunks_before == self._chunk_headers):
            self._head_bytes += size
            return self._head_bytes > self.limits.max_head_bytes
        return False
