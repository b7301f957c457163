"""No work for clients that left (gateway/server.py): a client that closes its connection before its
answer is complete makes the gateway abandon the upstream exchange.

A real gateway process (one worker) sits in front of ``HoldingBackend``, a socket server in this test
that never answers ``/hold/…``, sends ``/stream/…`` half a chunked answer and then nothing, answers
``/answer/…`` at once, and records for each connection when the gateway closed it. The legacy
cluster's read timeout is raised to 60 s, so without abandoning, the gateway would hold those upstream
connections a minute; the tests wait at most 5 s for the close.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.gateway.conftest import _gateway
from tests.support.servers import free_port
from tests.support.waiting import eventually

ROUTES = Path(__file__).parents[2] / "gateway" / "routes.toml"
_ANSWER = b'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\n\r\n{"ok":true}'
_HALF_STREAM = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n"
)


@dataclass
class Upstream:
    """One connection the gateway opened to the backend."""

    paths: list[str] = field(default_factory=list)
    closed: threading.Event = field(default_factory=threading.Event)


class HoldingBackend:
    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}"
        self.connections: list[Upstream] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def connection_of(self, path: str) -> Upstream | None:
        with self._lock:
            return next((conn for conn in self.connections if path in conn.paths), None)

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.server.accept()
            except OSError:
                return  # closed at the end of the module
            conn = Upstream()
            with self._lock:
                self.connections.append(conn)
            threading.Thread(target=self._serve, args=(sock, conn), daemon=True).start()

    def _serve(self, sock: socket.socket, conn: Upstream) -> None:
        buffer = b""
        with sock:
            while True:
                try:
                    data = sock.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    conn.closed.set()  # the gateway closed (or reset) this upstream connection
                    return
                buffer += data
                while b"\r\n\r\n" in buffer:  # the gateway sends these GETs without a body
                    head, _, buffer = buffer.partition(b"\r\n\r\n")
                    path = head.split(b" ", 2)[1].decode()
                    with self._lock:
                        conn.paths.append(path)
                    if path.startswith("/answer/"):
                        sock.sendall(_ANSWER)
                    elif path.startswith("/stream/"):
                        sock.sendall(_HALF_STREAM)
                    # /hold/…: never answered

    def close(self) -> None:
        self.server.close()


@dataclass
class Gateway:
    url: str
    address: tuple[str, int]
    backend: HoldingBackend
    log: Path

    def access_log(self) -> list[dict[str, object]]:
        """The gateway's JSON access-log lines so far (its other lines are plain text)."""
        lines = self.log.read_text(errors="replace").splitlines()
        return [json.loads(line) for line in lines if line.startswith('{"request_id"')]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    work = tmp_path_factory.mktemp("abandon")
    routes = ROUTES.read_text()
    legacy_read_timeout = "connect_timeout = 1.0\nread_timeout = 15.0\n"
    assert routes.count(legacy_read_timeout) == 1, "the legacy cluster's timeouts moved: update this test"
    routes_file = work / "routes.toml"
    routes_file.write_text(
        routes.replace(legacy_read_timeout, "connect_timeout = 1.0\nread_timeout = 60.0\n")
    )
    backend = HoldingBackend()
    with ExitStack() as stack:
        stack.callback(backend.close)
        env = {
            "LEGACY_URL": backend.url,
            "REVIEWS_URL": backend.url,
            "RECOMMENDATIONS_URL": backend.url,
            "JWT_JWKS_URL": f"http://127.0.0.1:{free_port()}/jwks.json",  # nothing there: no keys
            "ROUTES_FILE": str(routes_file),
        }
        url, _ = _gateway(stack, work, "gw-abandon", env, workers=1)
        port = int(url.rsplit(":", 1)[1])
        yield Gateway(url=url, address=("127.0.0.1", port), backend=backend, log=work / "gw-abandon.log")


def _leave_after(gateway: Gateway, path: str, wait_for: bytes = b"") -> Upstream:
    """Send ``GET path``, wait until the backend has it (and the client has ``wait_for``), then close
    the client's socket. Returns the upstream connection that carried the request."""
    with socket.create_connection(gateway.address, timeout=5) as client:
        client.sendall(f"GET {path} HTTP/1.1\r\nHost: shop\r\n\r\n".encode())
        assert eventually(lambda: gateway.backend.connection_of(path) is not None), "never forwarded"
        received = b""
        while wait_for not in received:
            chunk = client.recv(65536)
            assert chunk, f"the gateway closed before relaying {wait_for!r}: {received!r}"
            received += chunk
        upstream = gateway.backend.connection_of(path)
        assert upstream is not None
        assert not upstream.closed.is_set(), "closed before the client left: nothing to abandon"
    return upstream


def test_a_client_that_leaves_while_the_backend_works_abandons_the_exchange(gateway: Gateway) -> None:
    upstream = _leave_after(gateway, "/hold/1")
    # Without abandoning, the gateway would wait its 60 s read timeout on this connection.
    assert eventually(upstream.closed.is_set), "the upstream connection was not closed"
    # Logged (access log) as nginx's 499: the client closed the request, not a backend failure.
    assert eventually(
        lambda: any(line["status"] == 499 and line["cluster"] == "legacy" for line in gateway.access_log())
    )
    # ... and not as a crash: uvicorn's traceback for the cancelled task is filtered out.
    assert "Exception in ASGI application" not in gateway.log.read_text(errors="replace")

    # The gateway keeps serving, on a connection that did not carry the abandoned exchange.
    response = httpx.get(f"{gateway.url}/answer/1", timeout=5)
    assert response.status_code == 200
    assert response.json() == {"ok": True}
    assert gateway.backend.connection_of("/answer/1") is not upstream


def test_a_client_that_leaves_mid_body_stops_the_relay(gateway: Gateway) -> None:
    # The client has the status line and the first chunk; the backend has more to send, later.
    upstream = _leave_after(gateway, "/stream/1", wait_for=b"hello")
    assert eventually(upstream.closed.is_set), "the upstream connection was not closed"
    assert httpx.get(f"{gateway.url}/answer/2", timeout=5).status_code == 200


def test_many_clients_leaving_leave_the_pool_usable(gateway: Gateway) -> None:
    # More abandoned exchanges than anything else would release: each must free its pool slot.
    upstreams = [_leave_after(gateway, f"/hold/many-{i}") for i in range(20)]
    assert eventually(lambda: all(upstream.closed.is_set() for upstream in upstreams))
    responses = [httpx.get(f"{gateway.url}/answer/many-{i}", timeout=5) for i in range(5)]
    assert [response.status_code for response in responses] == [200] * 5


def test_a_client_that_stays_gets_its_answer_and_the_connection_is_reused(gateway: Gateway) -> None:
    # The cancellation only concerns clients that left: an answered exchange keeps its connection.
    with httpx.Client(base_url=gateway.url, timeout=5) as client:
        assert client.get("/answer/kept-1").status_code == 200
        assert client.get("/answer/kept-2").status_code == 200
    first = gateway.backend.connection_of("/answer/kept-1")
    assert first is not None and first is gateway.backend.connection_of("/answer/kept-2")
    assert not first.closed.is_set()
