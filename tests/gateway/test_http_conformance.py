"""The gateway's HTTP/1.1 conformance suite (issue 15; docs/http-conformance.md): whatever server layer
serves the proxy path must pass it.

Each server in ``SERVERS`` gets a real gateway process (``python -m gateway``, one worker,
``GATEWAY_SERVER`` set to it) in front of a real backend, ``tests.support.recorder`` under uvicorn,
which writes every request it receives (method, path, body) to a log. Every cluster is the recorder,
so any request the gateway forwards is in that log. The tests talk raw bytes over sockets
(``tests.support.raw_http``): keep-alive, pipelining, chunked request bodies, Expect: 100-continue,
HTTP/1.0, HEAD, 414/431, slow heads and bodies, and a request-smuggling corpus that must be answered
400 with the connection closed and nothing forwarded.

``EXPECTED_FAILURES`` names, per server, the cases it is known to get wrong, each with what it does
instead. They run as strict xfails: the test stays correct, the list is explicit, and fixing a case
without removing it from the list fails the suite. Adding a server: one word in ``SERVERS`` and an
entry (ideally empty) in ``EXPECTED_FAILURES``.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from gateway.settings import GatewaySettings, load_settings
from tests.gateway.conftest import _gateway
from tests.support.raw_http import RawConnection, Response
from tests.support.servers import free_port, recorder_server

SERVERS = ["native", "uvicorn"]

# What a server is known to get wrong: test key -> what it does instead. A key is the test function's
# name, plus ``[case]`` for a parametrized one. Run as ``xfail(strict=True)`` for that server only.
EXPECTED_FAILURES: dict[str, dict[str, str]] = {
    "uvicorn": {
        # httptools (llhttp) accepts these requests, uvicorn answers them and the gateway forwards them.
        "test_smuggling_is_refused[te-gzip-chunked]": "llhttp reads 'gzip, chunked' as chunked (chunked "
        "is last): 200, the de-chunked bytes forwarded with a Content-Length and without their gzip "
        "coding, connection kept open",
        "test_smuggling_is_refused[te-http10]": "llhttp reads an HTTP/1.0 request's chunked body "
        "(RFC 9112 6.1: faulty framing): 200, forwarded, then closed (HTTP/1.0)",
        "test_smuggling_is_refused[missing-host]": "no Host check in llhttp or uvicorn: 200, forwarded, "
        "connection kept open (the pipelined inner request forwarded too)",
        "test_smuggling_is_refused[duplicate-host]": "no Host check in llhttp or uvicorn: 200, forwarded, "
        "connection kept open (the pipelined inner request forwarded too)",
    },
}

# Short timeouts so the timeout cases are quick (the sweeper checks every timeout / 4); small limits so
# the oversize cases are cheap. The idle timeout stays long enough not to close a keep-alive test's
# connection between two of its requests on a busy machine.
LIMITS = {
    "GATEWAY_HEADER_TIMEOUT": "1",
    "GATEWAY_BODY_TIMEOUT": "1",
    "GATEWAY_IDLE_TIMEOUT": "5",
    "GATEWAY_MAX_URL_BYTES": "2048",
    "GATEWAY_MAX_HEADER_BYTES": "4096",
    "GATEWAY_MAX_HEADER_LINE_BYTES": "2000",
    "GATEWAY_MAX_HEADERS": "20",
}
# How long a test waits for a close the server owes: a bound, never a target.
CLOSE_BOUND = 10.0


@dataclass
class Conformance:
    server: str
    address: tuple[str, int]
    settings: GatewaySettings  # the limits and timeouts the gateway runs with
    recorder_log: Path
    log: Path  # the gateway's own output

    def connect(self, timeout: float = 5.0) -> RawConnection:
        return RawConnection(self.address, timeout)

    def recorded(self, marker: str) -> list[dict[str, Any]]:
        """What the backend received on paths containing ``marker``."""
        if not self.recorder_log.exists():
            return []
        lines = self.recorder_log.read_text().split("\n")[:-1]  # the last one may be half written
        records = [json.loads(line) for line in lines]
        return [record for record in records if marker in record["path"]]

    def barrier(self) -> None:
        """One request through the gateway on a fresh connection, answered by the backend: anything the
        gateway forwarded from an earlier, closed connection has been recorded by then."""
        marker = f"/conformance/barrier/{uuid.uuid4().hex}"
        with self.connect() as conn:
            conn.send(f"GET {marker} HTTP/1.1\r\nHost: shop\r\n\r\n".encode())
            response = conn.read_response()
        assert response.status == 200, response.raw
        assert self.recorded(marker)


@pytest.fixture(scope="module", params=SERVERS)
def gateway(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Conformance]:
    server: str = request.param
    work = tmp_path_factory.mktemp(f"http-conformance-{server}")
    recorder_log = work / "recorded.jsonl"
    with ExitStack() as stack:
        recorder = stack.enter_context(recorder_server(recorder_log, work / "recorder.log"))
        env = {
            "GATEWAY_SERVER": server,
            "LEGACY_URL": recorder,
            "REVIEWS_URL": recorder,
            "RECOMMENDATIONS_URL": recorder,
            "CATALOG_URL": recorder,
            "JWT_JWKS_URL": f"http://127.0.0.1:{free_port()}/jwks.json",  # nothing there: no keys
            "GATEWAY_ACCESS_LOG": "false",
            **LIMITS,
        }
        url, _ = _gateway(stack, work, f"gw-{server}", env, workers=1)
        parts = urlsplit(url)
        yield Conformance(
            server=server,
            address=(str(parts.hostname), int(parts.port or 80)),
            settings=load_settings({**os.environ, **env}),
            recorder_log=recorder_log,
            log=work / f"gw-{server}.log",
        )


@pytest.fixture(autouse=True)
def _expected_failure(request: pytest.FixtureRequest) -> None:
    """Marks the case xfail(strict) if ``EXPECTED_FAILURES`` lists it for this test's server."""
    callspec = getattr(request.node, "callspec", None)
    if callspec is None or "gateway" not in callspec.params:
        return
    case = callspec.params.get("case")
    key = request.node.originalname + (f"[{case}]" if case is not None else "")
    reason = EXPECTED_FAILURES.get(callspec.params["gateway"], {}).get(key)
    if reason is not None:
        request.applymarker(pytest.mark.xfail(strict=True, reason=reason))


def _marker(name: str) -> str:
    return f"/conformance/{name}/{uuid.uuid4().hex}"


def _get(path: str, *headers: str, version: str = "1.1") -> bytes:
    lines = [f"GET {path} HTTP/{version}", "Host: shop", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _assert_envelope(response: Response, status: int, code: str) -> None:
    assert response.status == status, response.raw
    assert response.header("content-type") == "application/json"
    assert response.header("connection") == "close"
    error = response.json()["error"]
    assert error["code"] == code
    assert error["message"]
    assert error["request_id"] == response.header("x-request-id")


def _assert_answered_by_backend(response: Response, request_id: str | None = None) -> None:
    assert response.status == 200, response.raw
    assert response.header("x-served-by") == "legacy"
    assert response.json() == {"recorded": True}
    if request_id is not None:
        assert response.header("x-request-id") == request_id


# Keep-alive, pipelining, Connection: close


def test_keep_alive_serves_several_requests_on_one_connection(gateway: Conformance) -> None:
    marker = _marker("keep-alive")
    with gateway.connect() as conn:
        for i in range(4):
            conn.send(_get(f"{marker}/{i}", f"X-Request-Id: ka-{i}"))
            response = conn.read_response()
            _assert_answered_by_backend(response, f"ka-{i}")
            assert response.header("connection") != "close"
        conn.send(
            f"POST {marker}/post HTTP/1.1\r\nHost: shop\r\nContent-Length: 5\r\n"
            "X-Request-Id: ka-post\r\n\r\nhello".encode()
        )
        _assert_answered_by_backend(conn.read_response(), "ka-post")
        conn.send(_get(f"{marker}/last", "X-Request-Id: ka-last"))
        _assert_answered_by_backend(conn.read_response(), "ka-last")
    paths = [record["path"] for record in gateway.recorded(marker)]
    assert paths == [f"{marker}/{i}" for i in range(4)] + [f"{marker}/post", f"{marker}/last"]


def test_connection_close_is_honoured(gateway: Conformance) -> None:
    marker = _marker("close")
    with gateway.connect(CLOSE_BOUND) as conn:
        conn.send(_get(marker, "Connection: close"))
        response = conn.read_response()
        _assert_answered_by_backend(response)
        assert response.header("connection") == "close"
        assert conn.closed_by_server()


def test_pipelined_requests_are_answered_in_order(gateway: Conformance) -> None:
    marker = _marker("pipeline")
    requests = (
        _get(f"{marker}/1", "X-Request-Id: pipe-1")
        + f"POST {marker}/2 HTTP/1.1\r\nHost: shop\r\nContent-Length: 11\r\n"
        "X-Request-Id: pipe-2\r\n\r\nhello world".encode()
        + _get(f"{marker}/3", "X-Request-Id: pipe-3")
        + f"PUT {marker}/4 HTTP/1.1\r\nHost: shop\r\nTransfer-Encoding: chunked\r\n"
        "X-Request-Id: pipe-4\r\n\r\n3\r\nabc\r\n0\r\n\r\n".encode()
        + _get(f"{marker}/5", "X-Request-Id: pipe-5")
    )
    with gateway.connect() as conn:
        conn.send(requests)  # all five in one write
        for i in range(1, 6):
            _assert_answered_by_backend(conn.read_response(), f"pipe-{i}")
        conn.send(_get(f"{marker}/6", "X-Request-Id: pipe-6"))  # and the connection is still usable
        _assert_answered_by_backend(conn.read_response(), "pipe-6")
    records = gateway.recorded(marker)
    assert [(r["method"], r["path"], r["body"]) for r in records] == [
        ("GET", f"{marker}/1", ""),
        ("POST", f"{marker}/2", "hello world"),
        ("GET", f"{marker}/3", ""),
        ("PUT", f"{marker}/4", "abc"),
        ("GET", f"{marker}/5", ""),
        ("GET", f"{marker}/6", ""),
    ]


def test_nothing_after_a_connection_close_request_is_processed(gateway: Conformance) -> None:
    # RFC 9112 §9.6: a server MUST NOT process further requests received on a connection after one
    # with Connection: close.
    marker = _marker("after-close")
    with gateway.connect(CLOSE_BOUND) as conn:
        conn.send(_get(f"{marker}/first", "Connection: close") + _get(f"{marker}/second"))
        response = conn.read_response()
        _assert_answered_by_backend(response)
        assert response.header("connection") == "close"
        assert conn.closed_by_server()
    gateway.barrier()
    assert [record["path"] for record in gateway.recorded(marker)] == [f"{marker}/first"]


# Request bodies


CHUNKED_BODIES = {
    # name: (chunked wire bytes in the pieces they are sent in, the body the backend must get)
    "one-write": ([b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"], b"hello world"),
    "split-everywhere": (
        [b"5", b"\r", b"\nhel", b"lo\r\n", b"A\r\n0123", b"456789\r", b"\n0\r\n", b"\r", b"\n"],
        b"hello0123456789",
    ),
    "extensions-and-trailer": ([b"5;name=value\r\nhello\r\n0\r\nX-Trailer: t\r\n\r\n"], b"hello"),
    "uppercase-hex": ([b"1A\r\n" + b"z" * 26 + b"\r\n0\r\n\r\n"], b"z" * 26),
    "empty": ([b"0\r\n\r\n"], b""),
}


@pytest.mark.parametrize("case", CHUNKED_BODIES)
def test_chunked_request_body_reaches_the_backend_exactly(gateway: Conformance, case: str) -> None:
    pieces, body = CHUNKED_BODIES[case]
    marker = _marker(f"chunked-{case}")
    with gateway.connect() as conn:
        conn.send(f"POST {marker} HTTP/1.1\r\nHost: shop\r\nTransfer-Encoding: chunked\r\n\r\n".encode())
        for piece in pieces:
            conn.send(piece)
        _assert_answered_by_backend(conn.read_response())
        conn.send(_get(f"{marker}/next"))  # the body ended where it should: the next request parses
        _assert_answered_by_backend(conn.read_response())
    records = gateway.recorded(marker)
    assert [(r["method"], r["path"]) for r in records] == [("POST", marker), ("GET", f"{marker}/next")]
    assert records[0]["body"].encode() == body
    forwarded = dict(records[0]["headers"])
    assert forwarded["content-length"] == str(len(body))  # re-framed with a length for the backend
    assert "transfer-encoding" not in forwarded


def test_expect_100_continue(gateway: Conformance) -> None:
    marker = _marker("expect")
    with gateway.connect() as conn:
        conn.send(
            f"POST {marker} HTTP/1.1\r\nHost: shop\r\nContent-Length: 5\r\n"
            "Expect: 100-continue\r\n\r\n".encode()
        )
        interim = conn.read_response()  # the body is sent only after this
        assert (interim.status, interim.body) == (100, b""), interim.raw
        conn.send(b"hello")
        _assert_answered_by_backend(conn.read_response())
        # Chunked, on the same connection.
        conn.send(
            f"POST {marker}/chunked HTTP/1.1\r\nHost: shop\r\nTransfer-Encoding: chunked\r\n"
            "Expect: 100-continue\r\n\r\n".encode()
        )
        assert conn.read_response().status == 100
        conn.send(b"3\r\nabc\r\n0\r\n\r\n")
        _assert_answered_by_backend(conn.read_response())
    records = gateway.recorded(marker)
    assert [(r["path"], r["body"]) for r in records] == [(marker, "hello"), (f"{marker}/chunked", "abc")]
    assert all("expect" not in dict(r["headers"]) for r in records)


# HTTP/1.0 and HEAD


def test_http_1_0_without_keep_alive_is_answered_and_closed(gateway: Conformance) -> None:
    marker = _marker("http10")
    with gateway.connect(CLOSE_BOUND) as conn:
        conn.send(_get(marker, version="1.0"))
        response = conn.read_response()
        _assert_answered_by_backend(response)
        assert response.header("transfer-encoding") is None  # an HTTP/1.0 client cannot read chunked
        assert conn.closed_by_server()


def test_http_1_0_keep_alive_is_either_honoured_or_refused_consistently(gateway: Conformance) -> None:
    # HTTP/1.0 persistence is opt-in on both sides: the server may keep the connection (and must then
    # say "Connection: keep-alive" and frame the answer with a length) or close it (and say close).
    marker = _marker("http10-keep-alive")
    with gateway.connect(CLOSE_BOUND) as conn:
        conn.send(_get(f"{marker}/1", "Connection: keep-alive", version="1.0"))
        response = conn.read_response()
        _assert_answered_by_backend(response)
        assert response.header("transfer-encoding") is None
        if (response.header("connection") or "").lower() == "keep-alive":
            assert response.header("content-length") is not None
            conn.send(_get(f"{marker}/2", "Connection: keep-alive", version="1.0"))
            _assert_answered_by_backend(conn.read_response())
        else:
            assert response.header("connection") == "close"
            assert conn.closed_by_server()


def test_head_has_the_get_headers_and_no_body(gateway: Conformance) -> None:
    marker = _marker("head")
    with gateway.connect() as conn:
        conn.send(_get(marker))
        get = conn.read_response()
        _assert_answered_by_backend(get)
        conn.send(f"HEAD {marker} HTTP/1.1\r\nHost: shop\r\n\r\n".encode())
        head = conn.read_response(head=True)
        assert head.status == 200
        assert head.header("content-length") == get.header("content-length") == str(len(get.body))
        assert head.header("content-type") == get.header("content-type")
        # No body bytes: the next response starts right where the HEAD answer's headers end.
        conn.send(_get(f"{marker}/next", "X-Request-Id: after-head"))
        _assert_answered_by_backend(conn.read_response(), "after-head")
    records = gateway.recorded(marker)
    assert [(r["method"], r["path"]) for r in records] == [
        ("GET", marker),
        ("HEAD", marker),
        ("GET", f"{marker}/next"),
    ]


# Oversize heads


def _oversize(settings: GatewaySettings, marker: str) -> dict[str, tuple[bytes, int, str]]:
    url = marker + "/" + "a" * settings.max_url_bytes
    line = "X-Big: " + "b" * settings.max_header_line_bytes
    many = [f"X-H{i}: 1" for i in range(settings.max_headers + 1)]
    # Each header under the line limit, all of them together over the total.
    per_header = settings.max_header_line_bytes - 10
    total = [f"X-T{i}: " + "t" * per_header for i in range(settings.max_header_bytes // per_header + 1)]
    return {
        "url": (_get(url), 414, "url_too_long"),
        "header-line": (_get(marker, line), 431, "headers_too_large"),
        "header-count": (_get(marker, *many), 431, "headers_too_large"),
        "header-total": (_get(marker, *total), 431, "headers_too_large"),
    }


@pytest.mark.parametrize("case", ["url", "header-line", "header-count", "header-total"])
def test_oversize_head_is_refused_and_closed(gateway: Conformance, case: str) -> None:
    marker = _marker(f"oversize-{case}")
    request, status, code = _oversize(gateway.settings, marker)[case]
    with gateway.connect(CLOSE_BOUND) as conn:
        conn.send(request)
        _assert_envelope(conn.read_response(), status, code)
        assert conn.closed_by_server()
    gateway.barrier()
    assert gateway.recorded(marker) == []


# Timeouts


def _assert_timed_out(conn: RawConnection) -> None:
    """The server answers 408 in the envelope and closes, within the bound."""
    _assert_envelope(conn.read_response(), 408, "request_timeout")
    assert conn.closed_by_server()


def test_slow_head_gets_408_and_is_closed(gateway: Conformance) -> None:
    marker = _marker("slow-head")
    with gateway.connect(CLOSE_BOUND) as conn:
        conn.send(f"GET {marker} HTTP/1.1\r\nHost: shop\r\nX-Slow: ".encode())  # never finished
        _assert_timed_out(conn)
    gateway.barrier()
    assert gateway.recorded(marker) == []


SLOW_BODIES = {
    "content-length": (b"Content-Length: 100\r\n", b"0123456789"),
    "chunked": (b"Transfer-Encoding: chunked\r\n", b"64\r\n0123456789"),
}


@pytest.mark.parametrize("case", SLOW_BODIES)
def test_slow_body_gets_408_and_is_closed(gateway: Conformance, case: str) -> None:
    framing, start = SLOW_BODIES[case]
    marker = _marker(f"slow-body-{case}")
    with gateway.connect(CLOSE_BOUND) as conn:
        conn.send(f"POST {marker} HTTP/1.1\r\nHost: shop\r\n".encode() + framing + b"\r\n" + start)
        _assert_timed_out(conn)
    gateway.barrier()
    assert gateway.recorded(marker) == []
    # The request path, woken by the refusal, must not crash writing after it.
    assert "Traceback" not in gateway.log.read_text()


def test_a_protocol_upgrade_is_refused_with_400(gateway: Conformance) -> None:
    marker = _marker("upgrade")
    with gateway.connect(CLOSE_BOUND) as conn:
        conn.send(
            f"GET {marker} HTTP/1.1\r\nHost: shop\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
            "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n".encode()
        )
        response = conn.read_response()
        assert response.status == 400, response.raw
        assert response.json()["error"]["code"] == "bad_request"
        assert conn.closed_by_server()
    gateway.barrier()
    assert gateway.recorded(marker) == []


def test_slow_clients_cannot_hold_the_worker(gateway: Conformance) -> None:
    marker = _marker("slow-clients")
    with ExitStack() as stack:
        stalled = [stack.enter_context(gateway.connect(CLOSE_BOUND)) for _ in range(20)]
        for i, conn in enumerate(stalled):
            conn.send(f"GET {marker}/stalled-{i} HTTP/1.1\r\nHost: shop\r\nX-Slow: ".encode())
        with gateway.connect() as other:
            other.send(_get(f"{marker}/other", "X-Request-Id: not-held"))
            _assert_answered_by_backend(other.read_response(), "not-held")
        # Answered while every stalled client was still being held (nothing sent to any of them yet).
        assert not any(conn.has_data() for conn in stalled)
        for conn in stalled:  # and each stalled client is cut off by its own timeout
            _assert_timed_out(conn)
    gateway.barrier()
    assert [record["path"] for record in gateway.recorded(marker)] == [f"{marker}/other"]


# Request smuggling and malformed requests: 400, closed, nothing forwarded.


def _smuggling(m: bytes) -> dict[str, bytes]:
    """Each attack as raw bytes. ``m`` (the case's marker) is in every path, the smuggled inner request
    included, so the backend's log shows whether any part of it was forwarded."""
    inner = b"GET " + m + b"/inner HTTP/1.1\r\nHost: shop\r\n\r\n"
    get = b"GET " + m + b" HTTP/1.1\r\nHost: shop\r\n"
    post = b"POST " + m + b" HTTP/1.1\r\nHost: shop\r\n"
    last_chunk_then_inner = b"0\r\n\r\n" + inner  # chunked: an empty body, then the inner request
    one_chunk_of_inner = b"%x\r\n" % len(inner) + inner + b"\r\n0\r\n\r\n"  # chunked: inner is the body

    def cl(body: bytes) -> bytes:
        return b"Content-Length: %d\r\n" % len(body)

    return {
        # Content-Length and Transfer-Encoding together, in both orders, and with TE hidden behind
        # valid (tab) whitespace.
        "cl-te": post
        + cl(last_chunk_then_inner)
        + b"Transfer-Encoding: chunked\r\n\r\n"
        + last_chunk_then_inner,
        "te-cl": post
        + b"Transfer-Encoding: chunked\r\n"
        + cl(one_chunk_of_inner[:4])
        + b"\r\n"
        + one_chunk_of_inner,
        "cl-te-tab": post
        + cl(last_chunk_then_inner)
        + b"Transfer-Encoding:\tchunked\r\n\r\n"
        + last_chunk_then_inner,
        # Content-Length repeated or malformed.
        "cl-cl-same": post + b"Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
        "cl-cl-different": post + b"Content-Length: 5\r\n" + cl(b"hello" + inner) + b"\r\nhello" + inner,
        "cl-list": post + b"Content-Length: 5, 5\r\n\r\nhello",
        "cl-negative": post + b"Content-Length: -5\r\n\r\nhello",
        "cl-overflow": post + b"Content-Length: 99999999999999999999999\r\n\r\nhello",
        # Transfer-Encoding that is not exactly chunked.
        "te-identity": post + b"Transfer-Encoding: identity\r\n\r\n" + inner,
        "te-chunked-identity": post + b"Transfer-Encoding: chunked, identity\r\n\r\n" + last_chunk_then_inner,
        "te-gzip-chunked": post + b"Transfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        "te-chunked-twice": post + b"Transfer-Encoding: chunked, chunked\r\n\r\n" + last_chunk_then_inner,
        "te-two-headers": post
        + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n"
        + last_chunk_then_inner,
        "te-xchunked": post + b"Transfer-Encoding: xchunked\r\n\r\n" + last_chunk_then_inner,
        "te-space-before-colon": post
        + cl(last_chunk_then_inner)
        + b"Transfer-Encoding : chunked\r\n\r\n"
        + last_chunk_then_inner,
        "te-tab-before-colon": post
        + cl(last_chunk_then_inner)
        + b"Transfer-Encoding\t: chunked\r\n\r\n"
        + last_chunk_then_inner,
        "te-vertical-tab": post + b"Transfer-Encoding: \x0bchunked\r\n\r\n" + last_chunk_then_inner,
        # RFC 9112 §6.1: Transfer-Encoding in an HTTP/1.0 request means its framing is faulty.
        "te-http10": b"POST "
        + m
        + b" HTTP/1.0\r\nHost: shop\r\nTransfer-Encoding: chunked\r\n\r\n"
        + last_chunk_then_inner,
        "te-obs-fold": post
        + cl(last_chunk_then_inner)
        + b"X-Pad: a\r\n Transfer-Encoding: chunked\r\n\r\n"
        + last_chunk_then_inner,
        # Bad chunk framing.
        "chunk-size-non-hex": post + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n" + inner,
        "chunk-size-negative": post + b"Transfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n" + inner,
        "chunk-size-overflow": post
        + b"Transfer-Encoding: chunked\r\n\r\n1"
        + b"0" * 16
        + b"\r\nhello\r\n0\r\n\r\n"
        + inner,
        "chunk-size-0x": post + b"Transfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n" + inner,
        "chunk-missing-crlf": post + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n" + inner,
        "chunk-bare-lf": post + b"Transfer-Encoding: chunked\r\n\r\n5\nhello\n0\n\n" + inner,
        # Malformed heads.
        "obs-fold-space": get + b"X-Folded: a\r\n b\r\n\r\n" + inner,
        "obs-fold-tab": get + b"X-Folded: a\r\n\tb\r\n\r\n" + inner,
        "bare-lf-request-line": b"GET " + m + b" HTTP/1.1\nHost: shop\r\n\r\n" + inner,
        "bare-lf-header": get + b"X-A: 1\nX-B: 2\r\n\r\n" + inner,
        "bare-lf-end-of-head": get + b"X-A: 1\n\n" + inner,
        "leading-whitespace-header": b"GET " + m + b" HTTP/1.1\r\n Host: shop\r\nX-A: b\r\n\r\n" + inner,
        "empty-header-name": get + b": b\r\n\r\n" + inner,
        "nul-in-header-value": get + b"X-A: a\x00b\r\n\r\n" + inner,
        "cr-in-header-value": get + b"X-A: a\rb\r\n\r\n" + inner,
        "space-before-colon": get + b"X-A : b\r\n\r\n" + inner,
        "invalid-method": b"G(T " + m + b" HTTP/1.1\r\nHost: shop\r\n\r\n" + inner,
        "invalid-version": b"GET " + m + b" HTTP/1.q\r\nHost: shop\r\n\r\n" + inner,
        "invalid-protocol": b"GET " + m + b" HTTX/1.1\r\nHost: shop\r\n\r\n" + inner,
        # RFC 9112 §3.2: an HTTP/1.1 request must have exactly one Host.
        "missing-host": b"GET " + m + b" HTTP/1.1\r\nX-A: b\r\n\r\n" + inner,
        "duplicate-host": get + b"Host: other\r\n\r\n" + inner,
    }


SMUGGLING_CASES = list(_smuggling(b"/m"))


@pytest.mark.parametrize("case", SMUGGLING_CASES)
def test_smuggling_is_refused(gateway: Conformance, case: str) -> None:
    marker = _marker(f"smuggle-{case}")
    with gateway.connect(CLOSE_BOUND) as conn:
        conn.send(_smuggling(marker.encode())[case])
        _assert_envelope(conn.read_response(), 400, "bad_request")
        assert conn.closed_by_server()
    gateway.barrier()
    assert gateway.recorded(marker) == []


def test_every_expected_failure_names_a_case_of_this_module() -> None:
    """A misspelt key in ``EXPECTED_FAILURES`` would silently mark nothing."""
    keys = set()
    for name, function in globals().items():
        if not name.startswith("test_"):
            continue
        keys.add(name)
        for mark in getattr(function, "pytestmark", []):
            if mark.name == "parametrize" and mark.args[0] == "case":
                keys.update(f"{name}[{case}]" for case in mark.args[1])
    for server, failures in EXPECTED_FAILURES.items():
        assert set(failures) <= keys, (server, set(failures) - keys)
