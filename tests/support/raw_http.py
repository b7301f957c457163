"""A raw HTTP/1.1 client connection for conformance tests: bytes in exactly as written, responses read
one at a time from a buffer (so pipelined answers, 1xx interim answers and HEAD answers parse), and a
way to tell whether the server closed the connection.

Parsing is strict on purpose: a response that is not well formed (a body longer than announced, a
bad status line, leftovers where the next response should start) raises ``MalformedResponse``.
"""

from __future__ import annotations

import json
import re
import select
import socket
from dataclasses import dataclass
from typing import Any

_STATUS_LINE = re.compile(rb"HTTP/1\.[01] (\d{3}) ?([^\r\n]*)")


class MalformedResponse(Exception):
    """The bytes received are not a well-formed HTTP/1.1 response."""


class ConnectionClosed(Exception):
    """The server closed the connection before a whole response arrived."""


@dataclass(frozen=True)
class Response:
    status: int
    reason: str
    headers: list[tuple[str, str]]  # names lower-cased, in the order received
    body: bytes
    raw: bytes

    def header(self, name: str) -> str | None:
        """The one value of header ``name`` (None if absent); a repeated header is an error."""
        values = [value for key, value in self.headers if key == name]
        if len(values) > 1:
            raise MalformedResponse(f"{name} repeated: {values}")
        return values[0] if values else None

    def json(self) -> Any:
        return json.loads(self.body)


class RawConnection:
    """One client connection; ``timeout`` bounds every wait for the server (a bound, not a target)."""

    def __init__(self, address: tuple[str, int], timeout: float = 5.0) -> None:
        self.sock = socket.create_connection(address, timeout=timeout)
        self.buffer = b""

    def __enter__(self) -> RawConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> None:
        try:
            chunk = self.sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            raise ConnectionClosed(self.buffer)
        self.buffer += chunk

    def _take_line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            self._fill()
        line, _, self.buffer = self.buffer.partition(b"\r\n")
        return line

    def _take(self, size: int) -> bytes:
        while len(self.buffer) < size:
            self._fill()
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def read_response(self, *, head: bool = False) -> Response:
        """The next response on the connection, an interim (1xx) one included. ``head``: the answer to a
        HEAD request (headers only, whatever Content-Length says)."""
        while b"\r\n\r\n" not in self.buffer:
            self._fill()
        head_bytes, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        lines = head_bytes.split(b"\r\n")
        match = _STATUS_LINE.fullmatch(lines[0])
        if match is None:
            raise MalformedResponse(f"bad status line {lines[0]!r} in {head_bytes!r}")
        status = int(match.group(1))
        headers: list[tuple[str, str]] = []
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            if not colon or not name or name != name.strip():
                raise MalformedResponse(f"bad header line {line!r}")
            headers.append((name.decode("latin-1").lower(), value.strip().decode("latin-1")))
        response = Response(status, match.group(2).decode("latin-1"), headers, b"", head_bytes + b"\r\n\r\n")
        if head or status < 200 or status in (204, 304):
            return response
        if response.header("transfer-encoding") == "chunked":
            body = self._read_chunked()
        elif (length := response.header("content-length")) is not None:
            body = self._take(int(length))
        else:  # delimited by the close
            body = self.read_until_closed()
        return Response(status, response.reason, headers, body, response.raw + body)

    def _read_chunked(self) -> bytes:
        body = b""
        while True:
            size = int(self._take_line().split(b";")[0], 16)
            if size == 0:
                while self._take_line():  # trailer fields, up to the empty line
                    pass
                return body
            body += self._take(size)
            if self._take(2) != b"\r\n":
                raise MalformedResponse("chunk not followed by CRLF")

    def read_until_closed(self) -> bytes:
        """What is left in the buffer and whatever arrives until the server closes the connection.
        Raises ``TimeoutError`` if the server keeps it open longer than the timeout."""
        data, self.buffer = self.buffer, b""
        while True:
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                return data
            if not chunk:
                return data
            data += chunk

    def has_data(self) -> bool:
        """True if the server has sent something not read yet, or closed the connection (no wait)."""
        if self.buffer:
            return True
        readable, _, _ = select.select([self.sock], [], [], 0)
        return bool(readable)

    def closed_by_server(self) -> bool:
        """True if the server closed the connection with nothing more sent (waits up to the timeout)."""
        try:
            rest = self.read_until_closed()
        except TimeoutError:
            return False
        if rest:
            raise MalformedResponse(f"unexpected bytes before the close: {rest[:200]!r}")
        return True
