"""The gateway under granian's RSGI interface, for measurement (bench/server_layer.py):

    granian --interface rsgi --factory bench._rsgi:create_app

An adapter, not a second gateway: each RSGI request becomes the ASGI scope, ``receive`` and ``send``
that ``GatewayApp`` (proxy path, admin app, OpenAPI) already takes, and the ``send`` messages are
relayed to ``response_bytes`` (one-piece answers) or ``response_stream``. Granian calls
``__rsgi_init__``/``__rsgi_del__`` with its event loop in each worker: the gateway's lifespan
(``GatewayApp.startup``/``shutdown``).

A client that closes its connection before its answer is complete cancels the request, as under
uvicorn (gateway/server.py): the proxy abandons the upstream exchange and logs a 499 (here at most
``WATCH_AFTER`` late).

What RSGI does not give the gateway (so this is not what ``python -m gateway`` serves):
- the raw request target: RSGI's ``path`` is percent-decoded, so ``raw_path`` is re-encoded from it
  and an encoded ``/`` (``%2F``), which uvicorn's path refuses, arrives here as a plain ``/``;
- header values that are not visible ASCII: granian leaves them out of ``headers.items()``;
- a truncated answer: a streamed (chunked) answer always ends cleanly when the handler returns, so a
  backend that fails mid-body is not shown to the client as a cut-off response;
- gateway/server.py's head limits, per-phase timeouts and connection cap, and its errors in the
  JSON envelope: granian's own (hyper's) limits apply instead;
- WebSocket upgrades are closed, not refused with a 400 envelope.

Typed against small protocols of its own, so the gateway does not depend on granian (a bench extra).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol
from urllib.parse import quote

from gateway.app import GatewayApp
from gateway.app import create_app as create_gateway_app

_ASGI = {"version": "3.0", "spec_version": "2.3"}
# How long a request runs before its client's disconnection is watched for (see __rsgi__).
WATCH_AFTER = 0.05
# What stays unencoded in a re-encoded path: RFC 3986's pchar set and "/" (not "%": it was decoded).
_PATH_SAFE = "/:@!$&'()*+,;=~"


class RsgiHeaders(Protocol):
    def __contains__(self, key: str) -> bool: ...
    def items(self) -> list[tuple[str, str]]: ...


class RsgiScope(Protocol):
    @property
    def proto(self) -> str: ...
    @property
    def http_version(self) -> str: ...
    @property
    def server(self) -> str: ...
    @property
    def client(self) -> str: ...
    @property
    def scheme(self) -> str: ...
    @property
    def method(self) -> str: ...
    @property
    def path(self) -> str: ...
    @property
    def query_string(self) -> str: ...
    @property
    def headers(self) -> RsgiHeaders: ...


class RsgiFuture(Protocol):
    def add_done_callback(self, callback: Callable[[Any], object], /) -> None: ...
    def remove_done_callback(self, callback: Callable[[Any], object], /) -> int: ...


class RsgiStream(Protocol):
    async def send_bytes(self, data: bytes) -> None: ...


class RsgiHttpProtocol(Protocol):
    def __aiter__(self) -> AsyncIterator[bytes]: ...
    def client_disconnect(self) -> RsgiFuture: ...
    def response_bytes(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None: ...
    def response_stream(self, status: int, headers: list[tuple[str, str]]) -> RsgiStream: ...


class RsgiWebsocketProtocol(Protocol):
    def close(self, status: int | None) -> object: ...


def _address(value: str) -> tuple[str, int] | None:
    """``"host:port"`` (``"[::1]:port"`` for IPv6) as ASGI's ``(host, port)``."""
    host, _, port = value.rpartition(":")
    return (host.strip("[]"), int(port)) if port.isdigit() else None


def asgi_scope(scope: RsgiScope) -> dict[str, Any]:
    """The ASGI HTTP scope the gateway reads, built from an RSGI one."""
    path = scope.path
    return {
        "type": "http",
        "asgi": _ASGI,
        "http_version": scope.http_version,
        "method": scope.method,
        "scheme": scope.scheme,
        "path": path,
        "raw_path": quote(path, safe=_PATH_SAFE).encode("ascii"),
        "root_path": "",
        "query_string": scope.query_string.encode("latin-1"),
        # Header names and values are visible ASCII here (granian drops other values).
        "headers": [
            (name.encode("latin-1"), value.encode("latin-1")) for name, value in scope.headers.items()
        ],
        "client": _address(scope.client),
        "server": _address(scope.server),
        "state": {},
    }


class _Exchange:
    """One request: ``receive`` reads the body from the protocol, ``send`` writes the answer to it."""

    __slots__ = (
        "_body",
        "_body_read",
        "_headers",
        "_protocol",
        "_status",
        "_stream",
        "disconnected",
        "finished",
    )

    def __init__(self, protocol: RsgiHttpProtocol, has_body: bool) -> None:
        self._protocol = protocol
        self._body: AsyncIterator[bytes] | None = protocol.__aiter__() if has_body else None
        self._body_read = False
        self._status = 500
        self._headers: list[tuple[str, str]] = []
        self._stream: RsgiStream | None = None
        self.disconnected = asyncio.Event()
        self.finished = False  # the whole answer has been handed to granian

    async def receive(self) -> dict[str, Any]:
        if self._body is not None:
            try:
                chunk = await self._body.__anext__()
            except StopAsyncIteration:
                self._body = None
            else:
                return {"type": "http.request", "body": chunk, "more_body": True}
        if not self._body_read:
            self._body_read = True
            return {"type": "http.request", "body": b"", "more_body": False}
        if not self.finished:  # the body has been read: what is left to wait for is the client leaving
            await self.disconnected.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            self._status = message["status"]
            self._headers = [
                (name.decode("latin-1"), value.decode("latin-1"))
                for name, value in message.get("headers", ())
            ]
        elif kind == "http.response.body":
            body: bytes = message.get("body", b"")
            more = message.get("more_body", False)
            if self._stream is None:
                if not more:
                    self.finished = True
                    self._protocol.response_bytes(self._status, self._headers, body)
                    return
                self._stream = self._protocol.response_stream(self._status, self._headers)
            if body:
                await self._stream.send_bytes(body)
            if not more:
                self.finished = True

    def release(self) -> None:
        self._stream = None


class RsgiGateway:
    """``GatewayApp`` as an RSGI application."""

    def __init__(self, app: GatewayApp) -> None:
        self.app = app

    def __rsgi_init__(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.run_until_complete(self.app.startup())

    def __rsgi_del__(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.run_until_complete(self.app.shutdown())

    async def __rsgi__(self, scope: RsgiScope, protocol: Any) -> None:
        if scope.proto != "http":
            websocket: RsgiWebsocketProtocol = protocol
            websocket.close(1008)  # no route proxies WebSockets (gateway/app.py refuses them too)
            return
        http: RsgiHttpProtocol = protocol
        headers = scope.headers
        # HTTP/1.x: no Content-Length and no Transfer-Encoding is no body (RFC 9112 6.3); HTTP/2 may send
        # DATA frames without a length, so its body is always read.
        has_body = scope.http_version == "2" or "content-length" in headers or "transfer-encoding" in headers
        exchange = _Exchange(http, has_body)
        task = asyncio.current_task()
        watching: list[RsgiFuture] = []

        def client_left(_: object) -> None:
            exchange.disconnected.set()
            if not exchange.finished and task is not None:
                task.cancel()  # as GatewayHttpProtocol.connection_lost: abandon the exchange, log 499

        def watch() -> None:
            # Resolves at once if the client has already left. Started late because it costs about as
            # much as sending the answer: a request done within WATCH_AFTER never pays for it.
            watching.append(http.client_disconnect())
            watching[0].add_done_callback(client_left)

        timer = asyncio.get_running_loop().call_later(WATCH_AFTER, watch)
        try:
            await self.app(asgi_scope(scope), exchange.receive, exchange.send)
        except asyncio.CancelledError:
            if not exchange.disconnected.is_set():
                raise  # shutdown, not the client
        except RuntimeError as exc:
            if type(exc).__name__ != "RSGIProtocolClosed":  # granian's: the client left while we wrote
                raise
        finally:
            timer.cancel()
            if watching:
                watching[0].remove_done_callback(client_left)
            # Granian ends a stream when its transport is freed, not when the handler returns: a stream
            # left unfinished (the backend failed mid-body) and kept by a traceback would hang the client.
            exchange.release()


def create_app() -> RsgiGateway:
    """The factory granian calls in each worker (``--factory``): settings from the environment."""
    return RsgiGateway(create_gateway_app())
