"""The upstream response parser (gateway/upstream.py: ``_Connection`` over httptools) on random bytes.

The bytes arrive in random pieces, then the backend closes the connection. Invariants: no exception
escapes the protocol's callbacks; the caller then gets either a response head (a status from 100 to
999 and lower-case header names) or an ``UpstreamError``; reading the body ends with the body or an
``UpstreamError``, never another exception or a hang.
"""

from __future__ import annotations

import asyncio
import atexit
from typing import Any

import atheris

from gateway.errors import UpstreamError
from gateway.upstream import _Connection

LOOP = asyncio.new_event_loop()
atexit.register(LOOP.close)
# Most inputs should start like a response, so the parser gets past the status line.
PREFIXES = (b"", b"HTTP/1.1 200 OK\r\n", b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n", b"HTTP/1.0 ")


class _Transport:
    def __init__(self) -> None:
        self.closed = False

    def write(self, data: bytes) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


async def _exchange(pieces: list[bytes], head_only: bool) -> None:
    connection = _Connection()
    connection.connection_made(_Transport())  # type: ignore[arg-type]
    connection.send(b"GET / HTTP/1.1\r\n\r\n", head_only=head_only)
    for piece in pieces:
        connection.data_received(piece)
    connection.connection_lost(None)
    try:
        status, headers = await connection.wait_head(0.01)
    except UpstreamError:
        return
    assert 100 <= status <= 999, status
    assert all(name == name.lower() for name, _ in headers), headers
    try:
        while await connection.next_chunk(0.01) is not None:
            pass
    except UpstreamError:
        pass


def one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    prefix = PREFIXES[fdp.ConsumeIntInRange(0, len(PREFIXES) - 1)]
    head_only = fdp.ConsumeBool()
    pieces = [prefix]
    while fdp.remaining_bytes():
        pieces.append(fdp.ConsumeBytes(fdp.ConsumeIntInRange(1, 64)))
    LOOP.run_until_complete(_exchange(pieces, head_only))
