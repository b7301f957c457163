"""A lean HTTP/1.1 client for the forwarder: one keep-alive pool per cluster.

Why our own (ADR 0006 and the prototypes measured there): httpx's request/response objects
cost more per request than the whole proxy budget. This is an ``asyncio.Protocol`` per connection with
``httptools.HttpResponseParser`` callbacks, a LIFO pool of idle connections, the request
written in one ``transport.write``, timeouts by stage, and back-pressure (reading pauses
while the consumer is behind). It speaks only what the gateway needs: HTTP/1.1 to our
own backends, Content-Length request bodies, Content-Length or chunked responses.

Retry rule: a request that failed on a *reused* idle connection before any response byte
arrived (the backend had closed it) is sent once more on a fresh connection, and only if
its method is idempotent. A POST is never sent twice.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator, Sequence

import httptools

from gateway.errors import Overloaded, UpstreamConnectError, UpstreamError, UpstreamTimeout

Headers = list[tuple[bytes, bytes]]
IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
_HIGH_WATER = 256 * 1024
_LOW_WATER = 64 * 1024


class _Connection(asyncio.Protocol):
    def __init__(self) -> None:
        # Kept: on 3.11 every asyncio.get_running_loop() is a getpid() system call (its fork check).
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.reused = False
        self._reset()

    def _reset(self) -> None:
        self.head: asyncio.Future[tuple[int, Headers]] = self.loop.create_future()
        self.headers: Headers = []
        self.chunks: collections.deque[bytes] = collections.deque()
        self.buffered = 0
        self.waiter: asyncio.Future[None] | None = None
        self.complete = False
        self.keep_alive = False
        self.got_bytes = False
        self.error: UpstreamError | None = None
        self.paused = False
        self.head_only = False

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's transports are not asyncio.Transport subclasses

    def data_received(self, data: bytes) -> None:
        self.got_bytes = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(UpstreamError("response_headers", "upgrade is not supported"))
        except httptools.HttpParserError as exc:
            self._fail(UpstreamError("response_body" if self.head.done() else "response_headers", str(exc)))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.complete:
            if not self.head.done():
                stage = "response_headers" if self.got_bytes else "request"
                self._fail(UpstreamConnectError(stage, "connection closed by the backend"))
            else:
                self._fail(UpstreamError("response_body", "connection closed mid-body"))

    def pause_writing(self) -> None:  # the request is written at once; nothing to pause
        pass

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        if not self.head.done():
            self.head.set_result((self.parser.get_status_code(), self.headers))
        if self.head_only:
            # A HEAD response announces a length it never sends; the parser cannot know.
            self.complete = True
            self.keep_alive = False
            self._wake()

    def on_body(self, body: bytes) -> None:
        self.chunks.append(bytes(body))
        self.buffered += len(body)
        if self.buffered > _HIGH_WATER and self.transport is not None and not self.paused:
            self.transport.pause_reading()
            self.paused = True
        self._wake()

    def on_message_complete(self) -> None:
        self.complete = True
        self.keep_alive = bool(self.parser.should_keep_alive())
        self._wake()

    # helpers
    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def _fail(self, error: UpstreamError) -> None:
        if self.error is None:
            self.error = error
        if not self.head.done():
            self.head.set_exception(error)
            self.head.exception()  # retrieved: the caller may have given up already
        self._wake()
        if self.transport is not None:
            self.transport.close()

    def send(self, request: bytes, head_only: bool) -> None:
        self._reset()
        self.head_only = head_only
        assert self.transport is not None
        self.transport.write(request)

    async def wait_head(self, timeout: float) -> tuple[int, Headers]:
        """Status and headers, or ``UpstreamTimeout``; a timer, not ``wait_for``, which costs a task."""
        if not self.head.done():
            timer = self.loop.call_later(timeout, self._head_timeout, timeout)
            try:
                return await self.head
            finally:
                timer.cancel()
        return self.head.result()

    def _head_timeout(self, timeout: float) -> None:
        self._fail(UpstreamTimeout("response_headers", f"no response within {timeout}s"))

    async def next_chunk(self, timeout: float) -> bytes | None:
        """The next body chunk, or None at the end."""
        while not self.chunks:
            if self.error is not None:
                raise self.error
            if self.complete:
                return None
            self.waiter = self.loop.create_future()
            try:
                await asyncio.wait_for(self.waiter, timeout)
            except TimeoutError:
                raise UpstreamTimeout("response_body", f"no body bytes for {timeout}s") from None
        chunk = self.chunks.popleft()
        self.buffered -= len(chunk)
        if self.paused and self.buffered < _LOW_WATER and self.transport is not None:
            self.transport.resume_reading()
            self.paused = False
        return chunk

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class UpstreamResponse:
    def __init__(
        self, pool: Pool, connection: _Connection, status: int, headers: Headers, read_timeout: float
    ) -> None:
        self.status = status
        self.headers = headers
        self._pool = pool
        self._connection: _Connection | None = connection
        self._read_timeout = read_timeout

    async def chunks(self) -> AsyncIterator[bytes]:
        connection = self._connection
        assert connection is not None
        try:
            while (chunk := await connection.next_chunk(self._read_timeout)) is not None:
                yield chunk
        except BaseException:
            self.release(reusable=False)
            raise
        self.release(reusable=True)

    async def read(self) -> bytes:
        connection = self._connection
        if connection is not None and connection.complete and connection.error is None:
            # All of it has arrived already (the usual small answer): no async generator, no wait.
            body = b"".join(connection.chunks)
            connection.chunks.clear()
            connection.buffered = 0
            if connection.paused and connection.transport is not None:
                connection.transport.resume_reading()
                connection.paused = False
            self.release(reusable=True)
            return body
        return b"".join([chunk async for chunk in self.chunks()])

    def release(self, *, reusable: bool) -> None:
        """Give the connection back (or close it); safe to call more than once."""
        connection, self._connection = self._connection, None
        if connection is not None:
            self._pool.give_back(
                connection, reusable=reusable and connection.complete and connection.keep_alive
            )


class _Slots:
    """At most ``size`` exchanges at a time; waiters are served in arrival order. Taking a free slot
    is one comparison: asyncio.Semaphore costs a coroutine and a generator expression per request."""

    def __init__(self, size: int) -> None:
        self.free = size
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    def try_take(self) -> bool:
        if self.free > 0 and not self._waiters:
            self.free -= 1
            return True
        return False

    async def take(self, timeout: float) -> None:
        """Wait for a slot; ``TimeoutError`` after ``timeout`` s without one."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        timer = asyncio.get_running_loop().call_later(timeout, _expire, waiter)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self.give()  # handed a slot as we were cancelled: pass it on
            raise
        finally:
            timer.cancel()
            if not waiter.done():
                waiter.cancel()

    def give(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot goes straight to the longest waiter
                return
        self.free += 1


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


class Pool:
    """Keep-alive connections to one destination, at most ``max_connections`` at a time."""

    def __init__(self, host: str, port: int, *, max_connections: int = 64) -> None:
        self.host = host
        self.port = port
        self.host_header = f"{host}:{port}".encode()
        self._idle: list[_Connection] = []
        self._slots = _Slots(max_connections)
        self._closed = False

    async def _connect(self, timeout: float) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            _, connection = await asyncio.wait_for(
                loop.create_connection(_Connection, self.host, self.port), timeout
            )
        except TimeoutError:
            raise UpstreamTimeout(
                "connect", f"{self.host}:{self.port} did not accept within {timeout}s"
            ) from None
        except OSError as exc:
            raise UpstreamConnectError("connect", f"{self.host}:{self.port}: {exc.strerror or exc}") from None
        return connection

    def _idle_connection(self) -> _Connection | None:
        """The most recently used idle connection still open (LIFO keeps the warm ones warm)."""
        while self._idle:
            connection = self._idle.pop()
            if (
                not connection.closed
                and connection.transport is not None
                and not connection.transport.is_closing()
            ):
                connection.reused = True
                return connection
        return None

    def give_back(self, connection: _Connection, *, reusable: bool) -> None:
        if reusable and not connection.closed and not self._closed:
            self._idle.append(connection)
        else:
            connection.close()
        self._slots.give()

    def _encode(
        self, method: str, target: bytes, headers: Sequence[tuple[bytes, bytes]], body: bytes
    ) -> bytes:
        lines = [method.encode(), b" ", target, b" HTTP/1.1\r\nhost: ", self.host_header, b"\r\n"]
        for name, value in headers:
            lines += [name, b": ", value, b"\r\n"]
        if body or method not in ("GET", "HEAD", "DELETE", "OPTIONS"):
            lines += [b"content-length: ", str(len(body)).encode(), b"\r\n"]
        lines += [b"\r\n", body]
        return b"".join(lines)

    async def request(
        self,
        method: str,
        target: bytes,
        headers: Sequence[tuple[bytes, bytes]],
        body: bytes = b"",
        *,
        connect_timeout: float,
        read_timeout: float,
    ) -> UpstreamResponse:
        """Send one request; the caller must consume ``chunks()`` or call ``release``."""
        payload = self._encode(method, target, headers, body)
        if not self._slots.try_take():
            try:
                # Waiting for a free connection counts against the connect timeout.
                await self._slots.take(connect_timeout)
            except TimeoutError:
                # Our own saturation, not the backend's failure: a 503, never a breaker verdict.
                raise Overloaded(f"all connections to {self.host}:{self.port} busy") from None
        attempts = 2 if method in IDEMPOTENT else 1
        try:
            for attempt in range(attempts):
                connection = self._idle_connection() or await self._connect(connect_timeout)
                connection.send(payload, head_only=method == "HEAD")
                try:
                    status, response_headers = await connection.wait_head(read_timeout)
                except UpstreamConnectError as exc:
                    connection.close()
                    stale = connection.reused and exc.stage == "request"
                    if stale and attempt + 1 < attempts:
                        continue  # the backend had closed this idle connection; safe to resend
                    raise
                except BaseException:
                    # Any other failure, or cancelled (the client left, gateway/server.py): the
                    # backend may still answer on this connection, so close it, never reuse it.
                    connection.close()
                    raise
                return UpstreamResponse(self, connection, status, response_headers, read_timeout)
            raise UpstreamConnectError(
                "request", "no connection"
            )  # pragma: no cover - loop always returns/raises
        except BaseException:
            self._slots.give()
            raise

    async def close(self) -> None:
        """Close the idle connections now; those in use are closed when they come back."""
        self._closed = True
        for connection in self._idle:
            connection.close()
        self._idle.clear()
