"""The gateway under uvicorn (``GATEWAY_SERVER=uvicorn``; the default is gateway/http1.py, ADR 0020):
request-head limits, per-phase timeouts and a connection cap added to uvicorn's protocol.

uvicorn's httptools protocol sets no bound on a request head's size and no timer while a request
arrives, so a client can hold memory (an unfinished 8 MiB header) or file descriptors (connections
that send nothing, or one byte a second) for as long as it likes. ``GatewayHttpProtocol`` is that
protocol with the bounds added; ``gateway/__main__.py`` hands it to ``uvicorn.run``.

The limits, the head accounting and the answers are shared with the native server
(gateway/http_limits.py: ``HttpLimits``, ``HeadBudget``, ``timeout_for``, ``error_response``); only
``GatewayHttpProtocol`` and ``_Sweeper`` know uvicorn.

Every refusal is answered by the gateway itself in the JSON envelope, ``Connection: close``, then the
connection is closed; nothing refused is ever forwarded:

- URL longer than ``max_url_bytes`` → 414 ``url_too_long``
- more than ``max_headers`` headers, one header (name + value) longer than ``max_header_line_bytes``,
  or all names and values longer than ``max_header_bytes`` → 431 ``headers_too_large`` (an
  unfinished head is cut off as soon as it cannot fit any more)
- head not complete ``header_timeout`` s after its first byte, or no body byte for ``body_timeout`` s
  while the body is awaited → 408 ``request_timeout`` if nothing of the response was sent yet, else
  a plain close
- a connection idle ``idle_timeout`` s (before its first request, or between keep-alive requests) →
  closed without an answer (no request is in flight)
- a connection beyond ``max_connections`` per worker → 503 ``unavailable`` with ``Retry-After: 1``
  written at once, then closed (see ``GatewayHttpProtocol.connection_made`` for why)
- a request the parser cannot read → 400 ``bad_request`` (uvicorn's plain-text 400, in the envelope)

A client that closes its connection before its answer is complete gets no more work: the request's
ASGI task is cancelled (``GatewayHttpProtocol.connection_lost``), which abandons the upstream exchange
(the upstream connection is closed, never reused; nothing more is relayed) and is logged as 499.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import uuid
import weakref
from typing import TYPE_CHECKING, Any

import httptools
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle
from uvicorn.server import ServerState

from gateway.http_limits import (
    ABANDONED,
    BAD_REQUEST,
    BODY,
    HEAD,
    HEADERS_TOO_LARGE,
    RETRY_AFTER,
    TIMEOUT,
    TOO_MANY_CONNECTIONS,
    WAITING,
    HeadBudget,
    HttpLimits,
    error_response,
    timeout_for,
)

if TYPE_CHECKING:
    from uvicorn._types import ASGI3Application


class _Sweeper:
    """One timer per worker: every ``tick`` each connection compares its phase's clock with its limit.

    Cheaper than a timer per connection, which would be re-armed on every request (a heap push and a
    cancel): the request path only writes a phase and a timestamp.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, connections: set[Any], tick: float) -> None:
        self._loop, self._connections, self._tick = loop, connections, tick
        loop.call_later(tick, self._run)

    def _run(self) -> None:
        now = self._loop.time()
        for connection in tuple(self._connections):
            if isinstance(connection, GatewayHttpProtocol):
                connection.check_deadline(now)
        self._loop.call_later(self._tick, self._run)


_sweepers: weakref.WeakKeyDictionary[ServerState, _Sweeper] = weakref.WeakKeyDictionary()


class _QuietAbandon(logging.Filter):
    """uvicorn logs any exception out of an ASGI task, a cancellation included, with its traceback.
    An abandoned request is not an error of the gateway (it is counted as a 499), so its record is
    dropped. Filtering the rare log record costs nothing per request, unlike wrapping every task."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not (isinstance(exc, asyncio.CancelledError) and exc.args == (ABANDONED,))


_QUIET_ABANDON = _QuietAbandon()


class GatewayHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with ``HttpLimits`` enforced and abandoned requests cancelled (see
    the module docstring).

    Overrides only parser callbacks, connection events and the start of a request's task. Per request
    it adds a few attribute writes and ``loop.time()`` calls; per header one addition; no timer
    operations (``_Sweeper`` does those) and no extra task or coroutine.
    """

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        *,
        limits: HttpLimits,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.limits = limits
        self._phase = WAITING
        self._since = 0.0  # when the phase began, or the body last made progress
        self._budget = HeadBudget(limits)
        # The cycle whose ASGI task is running and that task, until its response is complete.
        self._running: tuple[RequestResponseCycle, asyncio.Task[None]] | None = None
        if server_state not in _sweepers:
            _sweepers[server_state] = _Sweeper(self.loop, server_state.connections, limits.tick)
            self.logger.addFilter(_QUIET_ABANDON)  # once per server; addFilter ignores a repeat

    # Connection events

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if len(self.connections) >= self.limits.max_connections:
            # Answer at once rather than drop silently: a client sees a retryable 503, not a network
            # error, and the descriptor is released now. Reading its request first would hold the
            # descriptor (and parser memory) of exactly the connections the cap is there to shed.
            self.transport = transport
            transport.write(error_response(*TOO_MANY_CONNECTIONS, uuid.uuid4().hex, RETRY_AFTER))
            transport.close()
            return
        super().connection_made(transport)
        self._since = self.loop.time()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        running, self._running = self._running, None
        if running is None:
            return
        cycle, task = running
        if not cycle.response_complete and not task.done():
            # Nobody will read the answer: stop working on it. The cancellation reaches the request
            # path wherever it waits (a pool slot, the backend's head, a body chunk, the client's
            # flow control); the upstream client closes that exchange's connection instead of
            # reusing it, the breaker gets no verdict, and proxy.handle logs a 499. uvicorn alone
            # only marks the cycle disconnected and lets the exchange run to its end.
            cycle.disconnected = True
            task.cancel(ABANDONED)

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: ASGI3Application) -> None:
        # uvicorn's, keeping the task so that connection_lost can cancel it.
        coroutine = cycle.run_asgi(app)
        if self.config.reset_contextvars:  # uvicorn's opt-in isolation; the gateway does not set it
            task = self.loop.create_task(coroutine, context=contextvars.Context())
        else:
            task = self.loop.create_task(coroutine)
        task.add_done_callback(self.tasks.discard)
        self.tasks.add(task)
        self._running = (cycle, task)

    def data_received(self, data: bytes) -> None:
        # uvicorn's data_received, with our refusals answered in the envelope.
        budget = self._budget
        chunks_before = budget.chunks_begun
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if budget.refusal is None:
                self.logger.warning("Invalid HTTP request received.")
            self._answer_and_close(budget.refusal or BAD_REQUEST)
            return
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        if budget.over(self._phase == HEAD, len(data), chunks_before):
            self._answer_and_close(HEADERS_TOO_LARGE)

    # Parser callbacks

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._phase, self._since = HEAD, self.loop.time()
        self._budget.message_begun()

    def on_url(self, url: bytes) -> None:
        self.url += url
        self._budget.url(len(self.url))

    def on_header(self, name: bytes, value: bytes) -> None:
        # uvicorn's on_header, inlined (it is called per header), plus the size count.
        self._budget.header(name, value)
        name = name.lower()
        if name == b"expect" and value.lower() == b"100-continue":
            self.expect_100_continue = True
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self._budget.headers_complete(len(self.headers))
        self._phase, self._since = BODY, self.loop.time()
        super().on_headers_complete()

    def on_chunk_header(self) -> None:
        self._budget.chunk_begun()

    def on_body(self, body: bytes) -> None:
        self._since = self.loop.time()  # the body is still arriving
        self._budget.body()
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._phase = WAITING
        super().on_message_complete()

    def on_response_complete(self) -> None:
        # uvicorn's, without its keep-alive timer: the idle limit covers keep-alive (the sweeper).
        self._running = None  # answered: a close from now on abandons nothing
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self._since = self.loop.time()
        self.flow.resume_reading()
        if self.pipeline:
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)

    # Deadlines

    def check_deadline(self, now: float) -> None:
        """Called by the sweeper: close the connection if its current phase has run out of time."""
        phase, cycle = self._phase, self.cycle
        if self.transport.is_closing():
            return
        if self.flow.read_paused or (phase == BODY and cycle is not None and cycle.waiting_for_100_continue):
            # We stopped reading, or have not asked for the body yet: the client is not late.
            self._since = now
            return
        if phase == WAITING and cycle is not None and not cycle.response_complete:
            return  # the app is answering; the upstream client's own timeouts bound that
        if now - self._since >= timeout_for(phase, self.limits):
            if phase == WAITING:
                self.transport.close()
            else:
                self._answer_and_close(TIMEOUT)

    def _answer_and_close(self, refusal: tuple[int, str, str]) -> None:
        cycle = self.cycle
        if self._phase == BODY:
            answerable = cycle is not None and not cycle.response_started
        else:
            answerable = cycle is None or cycle.response_complete
        if cycle is not None and not cycle.response_complete:
            # The app must not write after us; connection_lost would say this one loop turn later.
            cycle.disconnected = True
            cycle.message_event.set()
        if answerable and not self.pipeline:
            self.transport.write(error_response(*refusal, uuid.uuid4().hex))
        self.transport.close()
