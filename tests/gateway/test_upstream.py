"""The lean upstream client against a real socket server with scripted answers."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from gateway.errors import Overloaded, UpstreamConnectError, UpstreamTimeout
from gateway.upstream import Pool
from tests.support.servers import free_port

Script = Callable[[bytes], Awaitable[tuple[bytes, bool]]]  # request head → (response bytes, close after)


class Backend:
    """A tiny HTTP/1.1 server: counts connections and requests, answers by a script."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.connections = 0
        self.requests: list[bytes] = []
        self.port = free_port()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    (
                        int(line.split(b":")[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length:")
                    ),
                    0,
                )
                body = await reader.readexactly(length) if length else b""
                self.requests.append(head + body)
                response, close = await self.script(head)
                writer.write(response)
                await writer.drain()
                if close:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def __aenter__(self) -> Backend:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()
        await self.server.wait_closed()


def ok(body: bytes = b'{"ok":true}') -> bytes:
    return b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (
        len(body),
        body,
    )


async def _get(pool: Pool, method: str = "GET", body: bytes = b"") -> tuple[int, bytes]:
    response = await pool.request(method, b"/x", [(b"x-test", b"1")], body, connect_timeout=1, read_timeout=1)
    return response.status, await response.read()


def test_keep_alive_reuses_one_connection():
    async def script(head: bytes) -> tuple[bytes, bool]:
        return ok(), False

    async def run() -> None:
        async with Backend(script) as backend:
            pool = Pool("127.0.0.1", backend.port)
            assert [await _get(pool) for _ in range(5)] == [(200, b'{"ok":true}')] * 5
            assert backend.connections == 1
            assert backend.requests[0].startswith(b"GET /x HTTP/1.1\r\nhost: 127.0.0.1:")
            await pool.close()

    asyncio.run(run())


def test_chunked_responses_are_reassembled():
    async def script(head: bytes) -> tuple[bytes, bool]:
        return (
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
            False,
        )

    async def run() -> None:
        async with Backend(script) as backend:
            pool = Pool("127.0.0.1", backend.port)
            assert await _get(pool) == (200, b"hello world")
            assert await _get(pool) == (200, b"hello world")
            assert backend.connections == 1
            await pool.close()

    asyncio.run(run())


def test_a_get_on_a_connection_the_backend_closed_is_resent_once_on_a_fresh_one():
    async def script(head: bytes) -> tuple[bytes, bool]:
        return b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", True  # closes after every answer

    async def run() -> None:
        async with Backend(script) as backend:
            pool = Pool("127.0.0.1", backend.port)
            assert await _get(pool) == (200, b"ok")
            await asyncio.sleep(0.05)  # the close reaches us; the idle connection is now dead
            assert await _get(pool) == (200, b"ok")
            assert len(backend.requests) == 2
            await pool.close()

    asyncio.run(run())


def test_a_post_is_never_sent_twice():
    calls = 0

    async def script(head: bytes) -> tuple[bytes, bool]:
        nonlocal calls
        calls += 1
        return b"", True  # swallow the request and hang up without answering

    async def run() -> None:
        async with Backend(script) as backend:
            pool = Pool("127.0.0.1", backend.port)
            with pytest.raises(UpstreamConnectError):
                await _get(pool, "POST", b'{"a":1}')
            assert calls == 1
            await pool.close()

    asyncio.run(run())


def test_refused_connection_names_the_connect_stage():
    async def run() -> None:
        pool = Pool("127.0.0.1", free_port())
        with pytest.raises(UpstreamConnectError) as excinfo:
            await _get(pool)
        assert excinfo.value.stage == "connect"

    asyncio.run(run())


def test_a_slow_backend_is_a_timeout_at_the_response_headers_stage():
    async def script(head: bytes) -> tuple[bytes, bool]:
        await asyncio.sleep(3)
        return ok(), True

    async def run() -> None:
        async with Backend(script) as backend:
            pool = Pool("127.0.0.1", backend.port)
            with pytest.raises(UpstreamTimeout) as excinfo:
                await pool.request("GET", b"/slow", [], connect_timeout=1, read_timeout=0.2)
            assert excinfo.value.stage == "response_headers"
            await pool.close()

    asyncio.run(run())


def test_head_responses_end_at_the_headers():
    async def script(head: bytes) -> tuple[bytes, bool]:
        return b"HTTP/1.1 200 OK\r\ncontent-length: 1234\r\n\r\n", False

    async def run() -> None:
        async with Backend(script) as backend:
            pool = Pool("127.0.0.1", backend.port)
            assert await _get(pool, "HEAD") == (200, b"")
            await pool.close()

    asyncio.run(run())


def test_request_bodies_carry_their_length():
    async def script(head: bytes) -> tuple[bytes, bool]:
        return ok(), False

    async def run() -> None:
        async with Backend(script) as backend:
            pool = Pool("127.0.0.1", backend.port)
            await _get(pool, "POST", "리뷰".encode())
            assert b"content-length: 6\r\n" in backend.requests[0]
            assert backend.requests[0].endswith("리뷰".encode())
            await pool.close()

    asyncio.run(run())


def test_waiting_for_a_free_connection_is_bounded_by_the_connect_timeout_then_overloaded():
    async def script(head: bytes) -> tuple[bytes, bool]:
        await asyncio.sleep(0.5)
        return ok(), False

    async def run() -> None:
        async with Backend(script) as backend:
            pool = Pool("127.0.0.1", backend.port, max_connections=1)
            busy = asyncio.create_task(_get(pool))
            await asyncio.sleep(0.05)
            # Our pool is full: the gateway is saturated, the backend did nothing wrong.
            with pytest.raises(Overloaded):
                await pool.request("GET", b"/x", [], connect_timeout=0.1, read_timeout=5)
            assert await busy == (200, b'{"ok":true}')
            await pool.close()

    asyncio.run(run())


def test_a_connection_in_use_when_the_pool_closes_is_closed_when_it_comes_back():
    async def script(head: bytes) -> tuple[bytes, bool]:
        return ok(), False

    async def run() -> None:
        async with Backend(script) as backend:
            pool = Pool("127.0.0.1", backend.port, max_connections=1)
            response = await pool.request("GET", b"/x", [], connect_timeout=1, read_timeout=5)
            connection = response._connection
            await pool.close()  # a reload retired the cluster while this response was being read
            assert await response.read() == b'{"ok":true}'
            assert connection is not None and connection.closed
            assert pool._idle == []

    asyncio.run(run())
