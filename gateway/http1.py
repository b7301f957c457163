"""The gateway's own HTTP/1.1 server: an asyncio Protocol on httptools that runs the ASGI app directly.

Chosen over uvicorn by measurement (docs/adr/0020-gateway-server-layer.md): per request it builds one
small ``Exchange`` and the scope dict, and writes the response head and body with one
``transport.write``; uvicorn's cycle objects, events and per-message checks are what cost the gateway a
quarter of its time. ``GATEWAY_SERVER=uvicorn`` still selects uvicorn (gateway/__main__.py).

What it does (docs/http-conformance.md has the suite that holds it to this):

- keep-alive (HTTP/1.1 by default, HTTP/1.0 when asked), pipelined requests answered in order, chunked
  request bodies, ``Expect: 100-continue`` (the 100 is sent when the app first asks for the body),
  HEAD (no body written), responses without a length sent chunked (HTTP/1.0: until close);
- the parser (llhttp, strict) refuses what a smuggler sends: Content-Length with Transfer-Encoding,
  duplicate Content-Length, a Transfer-Encoding other than ``chunked``, bad chunk sizes, obs-fold, bare
  LF, bad header characters; a Transfer-Encoding on an HTTP/1.0 request is refused here. Every refusal
  is 400 in the envelope with ``Connection: close``, then the connection is closed;
- ``HttpLimits`` (gateway/http_limits.py) as under uvicorn: 414, 431, 408 for a slow head or body, idle
  connections closed, a per-worker connection cap answered 503 at once; one sweeper per worker checks
  the clocks (no timer per request);
- a client that leaves mid-request cancels its task (the request path logs a 499);
- an answer given before the request body was read whole closes the connection (``Connection: close``),
  half-closing first and discarding what the client still sends, so the client reads the answer
  before the close (no reset);
- WebSocket and other upgrades are not supported: 400 in the envelope.

``serve`` runs one worker in this process, or several in spawned processes sharing one listening socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
import logging.config
import multiprocessing
import os
import signal
import socket
import sys
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, cast
from urllib.parse import unquote

import httptools

from gateway.http_limits import (
    ABANDONED,
    BAD_REQUEST,
    BODY,
    HEAD,
    HEADERS_TOO_LARGE,
    RETRY_AFTER,
    STATUS_LINE,
    TIMEOUT,
    TOO_MANY_CONNECTIONS,
    WAITING,
    HeadBudget,
    HttpLimits,
    Refused,
    error_response,
    timeout_for,
)

logger = logging.getLogger("gateway.http1")

App = Callable[
    [dict[str, Any], Callable[[], Awaitable[dict[str, Any]]], Callable[[dict[str, Any]], Awaitable[None]]],
    Awaitable[None],
]

_ASGI = {"version": "3.0", "spec_version": "2.3"}
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_NO_BODY_STATUSES = frozenset({204, 304})
# Request body bytes held for an app that has not asked for them yet before the socket stops being read.
_BODY_BUFFER = 256 * 1024
# Requests parsed ahead of the one being answered before the socket stops being read.
_PIPELINE_DEPTH = 16
# After an answer that closes a connection whose request body was not read whole: how long, and how
# many more bytes, to read and discard before the close (so the client sees the answer, not a reset).
_LINGER_SECONDS = 2.0
_LINGER_BYTES = 1024 * 1024
_BACKLOG = 2048
_UPGRADE_REFUSED = (400, "bad_request", "Protocol upgrades (WebSocket, h2c) are not supported here.")
_INTERNAL_ERROR = (500, "internal_error", "The gateway failed to answer this request.")
_TE_NOT_CHUNKED = (400, "bad_request", "Transfer-Encoding other than chunked is not supported.")
_BAD_HOST = (400, "bad_request", "An HTTP/1.1 request needs exactly one Host header.")
_TE_ON_HTTP10 = (400, "bad_request", "Transfer-Encoding is not allowed on an HTTP/1.0 request.")


class _Clock:
    """The ``date`` header, formatted once a second by the sweeper rather than per response."""

    header = b""

    @classmethod
    def update(cls) -> None:
        cls.header = b"date: " + email.utils.formatdate(usegmt=True).encode() + b"\r\n"


class Server:
    """One worker's state shared by its connections: the app, the limits, the open connections."""

    def __init__(self, app: App, limits: HttpLimits, loop: asyncio.AbstractEventLoop) -> None:
        self.app, self.limits, self.loop = app, limits, loop
        self.connections: set[Connection] = set()
        self.stopping = False
        _Clock.update()
        self._sweep_handle = loop.call_later(limits.tick, self._sweep)

    def protocol(self) -> Connection:
        return Connection(self)

    def _sweep(self) -> None:
        _Clock.update()
        now = self.loop.time()
        for connection in tuple(self.connections):
            connection.check_deadline(now)
        self._sweep_handle = self.loop.call_later(self.limits.tick, self._sweep)

    async def drain(self, grace: float) -> None:
        """Stop: close idle connections now, let requests in flight finish for up to ``grace`` s."""
        self.stopping = True
        deadline = self.loop.time() + grace
        while True:
            for connection in tuple(self.connections):
                connection.close_if_idle()
            if not self.connections or self.loop.time() >= deadline:
                break
            await asyncio.sleep(0.05)
        for connection in tuple(self.connections):
            connection.abort()
        self._sweep_handle.cancel()


class Exchange:
    """One request and its answer: the scope, the body as it arrives, ``receive`` and ``send``."""

    __slots__ = (
        "body_done",
        "buffered",
        "chunked",
        "chunks",
        "complete",
        "connection",
        "expect_continue",
        "head_request",
        "head_sent",
        "headers",
        "http10",
        "keep_alive",
        "scope",
        "status",
        "waiter",
    )

    def __init__(
        self, connection: Connection, scope: dict[str, Any], keep_alive: bool, expect_continue: bool
    ) -> None:
        self.connection = connection
        self.scope = scope
        self.chunks: list[bytes] = []
        self.buffered = 0
        self.body_done = False
        self.waiter: asyncio.Future[None] | None = None
        self.expect_continue = expect_continue
        self.keep_alive = keep_alive
        self.head_request = scope["method"] == "HEAD"
        self.http10 = scope["http_version"] == "1.0"
        self.status = 0
        self.headers: Any = ()
        self.head_sent = False
        self.chunked = False
        self.complete = False

    # Fed by the connection's parser

    def body(self, chunk: bytes) -> None:
        if self.complete:
            return  # answered already: the rest of the body is read and dropped
        self.chunks.append(chunk)
        self.buffered += len(chunk)
        self._wake()

    def finished(self) -> None:
        self.body_done = True
        self._wake()

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # ASGI

    async def receive(self) -> dict[str, Any]:
        connection = self.connection
        while not self.chunks and not self.body_done:
            if self.complete or connection.closed:
                return {"type": "http.disconnect"}
            if self.expect_continue:
                self.expect_continue = False
                connection.transport.write(_CONTINUE)
            connection.body_wanted()
            self.waiter = connection.server.loop.create_future()
            try:
                await self.waiter
            finally:
                self.waiter = None
        if self.complete or (connection.closed and not self.chunks):
            return {"type": "http.disconnect"}
        body = self.chunks[0] if len(self.chunks) == 1 else b"".join(self.chunks)
        self.chunks.clear()
        self.buffered = 0
        connection.body_taken()
        return {"type": "http.request", "body": body, "more_body": not self.body_done}

    async def send(self, message: dict[str, Any]) -> None:
        connection = self.connection
        if connection.transport.is_closing():
            return  # refused (408, 400) or abandoned meanwhile: nobody reads this
        kind = message["type"]
        if kind == "http.response.start":
            if self.status:
                raise RuntimeError("the response has already started")
            self.status = message["status"]
            self.headers = message.get("headers", ())
            return
        if kind != "http.response.body":
            raise RuntimeError(f"unexpected ASGI message {kind!r}")
        if not self.status or self.complete:
            raise RuntimeError("http.response.body before http.response.start, or after the last body")
        body: bytes = message.get("body", b"")
        more: bool = message.get("more_body", False)
        if not self.head_sent:
            data = self._head(body, more)
        elif self.chunked and body:
            data = b"%x\r\n%s\r\n" % (len(body), body)
        else:
            data = body
        if self.head_request:
            data = data if not self.head_sent else b""
        if not more:
            self.complete = True
            if self.chunked and not self.head_request:
                data += b"0\r\n\r\n"
        self.head_sent = True
        if data:
            connection.transport.write(data)
        if not more:
            connection.answered(self)
        elif connection.write_paused:
            await connection.writable()

    def _head(self, body: bytes, more: bool) -> bytes:
        """Status line and headers (and the first body bytes unless HEAD), framing decided here."""
        status = self.status
        lines = [STATUS_LINE.get(status) or b"HTTP/1.1 %d \r\n" % status, _Clock.header]
        length: bytes | None = None
        for name, value in self.headers:
            lowered = name.lower()
            if lowered == b"content-length":
                length = value
                continue
            if lowered in (b"connection", b"transfer-encoding", b"keep-alive"):
                continue  # framing is this server's
            lines.append(b"%s: %s\r\n" % (name, value))
        if status in _NO_BODY_STATUSES or status < 200:
            body = b""
        elif length is not None:
            lines.append(b"content-length: %s\r\n" % length)
        elif not more:
            lines.append(b"content-length: %d\r\n" % len(body))
        elif self.http10:
            self.keep_alive = False  # the end of the body is the end of the connection
        else:
            self.chunked = True
            lines.append(b"transfer-encoding: chunked\r\n")
        if not self.body_done:
            # Answered before the request body was read whole: where the next request would start is
            # not known to the client's liking, so this connection ends after the answer.
            self.keep_alive = False
        if not self.keep_alive:
            lines.append(b"connection: close\r\n")
        elif self.http10:
            lines.append(b"connection: keep-alive\r\n")
        lines.append(b"\r\n")
        if self.head_request:
            return b"".join(lines)
        if self.chunked and body:
            lines.append(b"%x\r\n%s\r\n" % (len(body), body))
        elif body:
            lines.append(body)
        return b"".join(lines)


class Connection(asyncio.Protocol):
    """One client connection: parses requests, runs them one at a time in order, enforces the limits."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.limits = server.limits
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.parser = httptools.HttpRequestParser(self)
        self.closed = False
        self.write_paused = False
        self._write_waiters: list[asyncio.Future[None]] = []
        self.read_paused = False
        self._client: tuple[str, int] | None = None
        self._local: tuple[str, int] | None = None
        # Parsing
        self._phase = WAITING
        self._since = 0.0
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._budget = HeadBudget(server.limits)
        self._parsing: Exchange | None = None  # the request whose body is arriving
        self._after: tuple[int, str, str] | None = None  # the refusal due once earlier answers are out
        # Answering
        self._running: Exchange | None = None
        self._task: asyncio.Task[None] | None = None
        self._queue: deque[Exchange] = deque()
        self._lingering = 0  # > 0: discarding input before the close; bytes still allowed

    # Connection events

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        if len(self.server.connections) >= self.limits.max_connections or self.server.stopping:
            transport.write(error_response(*TOO_MANY_CONNECTIONS, uuid.uuid4().hex, RETRY_AFTER))
            transport.close()
            self.closed = True
            return
        self.server.connections.add(self)
        peer = transport.get_extra_info("peername")
        local = transport.get_extra_info("sockname")
        self._client = (str(peer[0]), int(peer[1])) if isinstance(peer, tuple) else None
        self._local = (str(local[0]), int(local[1])) if isinstance(local, tuple) else None
        self._since = self.server.loop.time()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.server.connections.discard(self)
        for waiter in self._write_waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._write_waiters.clear()
        self._queue.clear()
        running, task = self._running, self._task
        if running is not None:
            running._wake()
            if task is not None and not task.done() and not running.complete:
                # Nobody will read the answer: stop working on it (proxy.handle logs a 499).
                task.cancel(ABANDONED)

    def eof_received(self) -> bool | None:
        # The client closed its side: a request still being answered is abandoned (as uvicorn and
        # nginx do; a client that half-closes and still waits for its answer is not supported).
        return None  # the transport closes; connection_lost cancels what is running

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        for waiter in self._write_waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._write_waiters.clear()

    async def writable(self) -> None:
        if self.write_paused and not self.closed:
            waiter = self.server.loop.create_future()
            self._write_waiters.append(waiter)
            await waiter

    def data_received(self, data: bytes) -> None:
        if self._lingering:
            self._lingering -= min(len(data), self._lingering)
            if not self._lingering:
                self._close_now()
            return
        budget = self._budget
        chunks_before = budget.chunks_begun
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._parse_failed(_UPGRADE_REFUSED)
            return
        except (httptools.HttpParserError, Refused):
            self._parse_failed(budget.refusal or BAD_REQUEST)
            return
        if budget.over(self._phase == HEAD, len(data), chunks_before):
            self._refuse(HEADERS_TOO_LARGE)

    # Parser callbacks

    def on_message_begin(self) -> None:
        self._phase, self._since = HEAD, self.server.loop.time()
        self._url = b""
        self._headers = []
        self._budget.message_begun()

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._budget.url(len(self._url))

    def on_header(self, name: bytes, value: bytes) -> None:
        self._budget.header(name, value)
        self._headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        headers, budget = self._headers, self._budget
        budget.headers_complete(len(headers))
        parser = self.parser
        version = parser.get_http_version()
        expect_continue = upgrade = False
        hosts = 0
        for name, value in headers:
            if name == b"host":
                hosts += 1
            elif name == b"upgrade":
                upgrade = True
            elif name == b"expect" and value.lower() == b"100-continue":
                expect_continue = version != "1.0"
            elif name == b"transfer-encoding":
                # Only chunked is spoken (RFC 9112 §6.1: on HTTP/1.0 the framing is faulty); anything
                # else ("gzip, chunked") would reach the backend de-chunked but still announced coded.
                if version == "1.0":
                    budget.refuse(_TE_ON_HTTP10)
                if value.strip().lower() != b"chunked":
                    budget.refuse(_TE_NOT_CHUNKED)
        if hosts > 1 or (hosts == 0 and version == "1.1"):
            budget.refuse(_BAD_HOST)  # RFC 9112 §3.2: exactly one Host on HTTP/1.1, at most one before
        if upgrade and parser.should_upgrade():
            budget.refuse(_UPGRADE_REFUSED)  # refused here, before the request runs
        try:
            parsed = httptools.parse_url(self._url)
            raw_path: bytes = parsed.path
            path = raw_path.decode("ascii")
            if "%" in path:
                path = unquote(path)
        except (httptools.HttpParserInvalidURLError, UnicodeDecodeError):
            budget.refuse(BAD_REQUEST)
        scope = {
            "type": "http",
            "asgi": _ASGI,
            "http_version": version,
            "server": self._local,
            "client": self._client,
            "scheme": "http",
            "method": parser.get_method().decode("ascii"),
            "root_path": "",
            "path": path,
            "raw_path": raw_path,
            "query_string": parsed.query or b"",
            "headers": headers,
        }
        exchange = Exchange(
            self, scope, parser.should_keep_alive() and not self.server.stopping, expect_continue
        )
        self._parsing = exchange
        self._phase, self._since = BODY, self.server.loop.time()
        if self._running is None:
            self._start(exchange)
        else:
            self._queue.append(exchange)
            if len(self._queue) >= _PIPELINE_DEPTH:
                self._pause_reading()

    def on_chunk_header(self) -> None:
        self._budget.chunk_begun()

    def on_body(self, body: bytes) -> None:
        self._since = self.server.loop.time()
        self._budget.body()
        exchange = self._parsing
        if exchange is not None:
            exchange.body(body)
            if exchange.buffered > _BODY_BUFFER:
                self._pause_reading()

    def on_message_complete(self) -> None:
        self._phase, self._since = WAITING, self.server.loop.time()
        exchange, self._parsing = self._parsing, None
        if exchange is not None:
            exchange.finished()

    # Running requests

    def _start(self, exchange: Exchange) -> None:
        self._running = exchange
        self._task = self.server.loop.create_task(self._run(exchange))

    async def _run(self, exchange: Exchange) -> None:
        try:
            await self.server.app(exchange.scope, exchange.receive, exchange.send)
        except asyncio.CancelledError:
            if self.closed:
                return  # abandoned by its client: proxy.handle has counted it
            raise
        except Exception:
            logger.exception("unhandled error in the gateway app")
        if not exchange.complete:
            # The app failed, or ended without finishing its answer (a truncated relay): the client
            # must see an error or a short response, never a complete-looking one.
            if not exchange.head_sent and not self.transport.is_closing():
                self.transport.write(error_response(*_INTERNAL_ERROR, uuid.uuid4().hex))
            self._close_now()

    def answered(self, exchange: Exchange) -> None:
        """The app has sent the last byte of ``exchange``'s answer."""
        self._running = None
        self._task = None
        self._since = self.server.loop.time()
        if not exchange.keep_alive:
            self._close_after(exchange)
            return
        if self._queue:
            self._start(self._queue.popleft())
        elif self._after is not None:
            self.transport.write(error_response(*self._after, uuid.uuid4().hex))
            self._close_now()
            return
        self._resume_reading()

    def _close_after(self, exchange: Exchange) -> None:
        self._queue.clear()
        if exchange.body_done:
            self._close_now()
            return
        # The client may still be sending the body: half-close, read and drop the rest for a while.
        self._lingering = _LINGER_BYTES
        self._resume_reading()
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.server.loop.call_later(_LINGER_SECONDS, self._close_now)

    def _close_now(self) -> None:
        if not self.transport.is_closing():
            self.transport.close()
        self._lingering = 0

    def abort(self) -> None:
        if not self.transport.is_closing():
            self.transport.abort()

    def close_if_idle(self) -> None:
        if self._running is None and not self._queue and self._phase == WAITING:
            self._close_now()

    # Flow control of the request side

    def _pause_reading(self) -> None:
        if not self.read_paused:
            self.read_paused = True
            self.transport.pause_reading()

    def _resume_reading(self) -> None:
        if self.read_paused and not self.closed:
            self.read_paused = False
            self.transport.resume_reading()

    def body_wanted(self) -> None:
        self._since = self.server.loop.time()  # the clock runs from when the app asks
        if len(self._queue) < _PIPELINE_DEPTH:
            self._resume_reading()

    def body_taken(self) -> None:
        if len(self._queue) < _PIPELINE_DEPTH:
            self._resume_reading()

    # Refusals and deadlines

    def _parse_failed(self, refusal: tuple[int, str, str]) -> None:
        """The bytes after the requests read so far are not a request. What came before is still
        answered, in order; then the refusal, or only the close if the last request asked for one
        (the bytes after a ``Connection: close`` request are never processed, RFC 9112 §9.6)."""
        running = self._running
        if running is None or running is self._parsing:
            self._refuse(refusal)
            return
        broken, self._parsing = self._parsing, None
        if broken is not None and broken in self._queue:
            self._queue.remove(broken)  # its body did not parse: never run
        self._after = refusal
        self._pause_reading()

    def _refuse(self, refusal: tuple[int, str, str]) -> None:
        """Answer a request the server itself refuses, in the envelope, and close. Not answerable
        when an earlier request's answer is still being written: then only the close."""
        self._queue.clear()
        running = self._running
        if running is None or (self._phase == BODY and running is self._parsing and not running.head_sent):
            if running is not None:
                running.complete = True  # the app must not write after us
                running._wake()
            self.transport.write(error_response(*refusal, uuid.uuid4().hex))
        self._close_now()

    def check_deadline(self, now: float) -> None:
        if self.closed or self.transport.is_closing() or self._lingering:
            return
        phase = self._phase
        if self.read_paused:
            self._since = now  # we stopped reading: the client is not late
            return
        if phase == WAITING and (self._running is not None or self._queue):
            return  # the app is answering; the upstream client's timeouts bound that
        if phase == BODY and self._parsing is not None and self._parsing.expect_continue:
            self._since = now  # the body has not been asked for yet
            return
        if now - self._since >= timeout_for(phase, self.limits):
            if phase == WAITING:
                self._close_now()
            else:
                self._refuse(TIMEOUT)


# Running the server


async def run_worker(app: Any, limits: HttpLimits, sock: socket.socket, grace: float = 10.0) -> None:
    """Serve ``app`` on ``sock`` until SIGTERM or SIGINT; its startup/shutdown around the serving."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await app.startup()
    try:
        server = Server(app, limits, loop)
        # Listening only now: until its start-up is done, a connection is refused rather than queued
        # unanswered (readiness checks and the tests wait for the port).
        sock.listen(_BACKLOG)
        listener = await loop.create_server(server.protocol, sock=sock, backlog=_BACKLOG)
        await stop.wait()
        listener.close()
        await server.drain(grace)
    finally:
        await app.shutdown()


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))  # each worker listens once its app has started
    sock.set_inheritable(True)
    return sock


def _worker_main(sock: socket.socket, log_config: dict[str, Any]) -> None:
    """A spawned worker: fresh interpreter, its own app (settings from the environment) and loop."""
    logging.config.dictConfig(log_config)
    _serve_here(sock)


def _serve_here(sock: socket.socket) -> None:
    import uvloop

    from gateway.app import create_app

    app = create_app()
    limits = HttpLimits.from_settings(app.settings)
    uvloop.run(run_worker(app, limits, sock))


def serve(host: str, port: int, workers: int, log_config: dict[str, Any]) -> None:
    """One worker in this process, or ``workers`` spawned processes on one socket, restarted if one dies."""
    logging.config.dictConfig(log_config)
    sock = bind(host, port)
    if workers <= 1:
        _serve_here(sock)
        return
    context = multiprocessing.get_context("spawn")
    processes: list[Any] = []
    stopping = False

    def stop(signum: int, frame: Any) -> None:
        nonlocal stopping
        stopping = True
        for process in processes:
            if process.is_alive():
                os.kill(process.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    def start() -> Any:
        process = context.Process(target=_worker_main, args=(sock, log_config), daemon=False)
        process.start()
        return process

    processes.extend(start() for _ in range(workers))
    while not stopping:
        time.sleep(0.5)
        for index, process in enumerate(processes):
            if not process.is_alive() and not stopping:
                print(
                    f"gateway: worker {process.pid} exited ({process.exitcode}); starting another",
                    file=sys.stderr,
                )
                processes[index] = start()
    for process in processes:
        process.join(timeout=30)
        if process.is_alive():
            process.kill()
    with contextlib.suppress(OSError):
        sock.close()
