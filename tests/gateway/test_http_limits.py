"""The gateway's HTTP front door under attack (gateway/server.py): head limits, timeouts, connection cap.

Each test talks raw HTTP/1.1 over sockets to a real gateway process (one worker, so its pid is the
process whose memory and descriptors are measured). Every cluster points at a socket the test holds
and never answers: a request that reached a backend would show there as a pending connection.
"""

from __future__ import annotations

import json
import os
import select
import socket
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from gateway.http_limits import BODY, HEAD, WAITING, HttpLimits, error_response, timeout_for
from gateway.settings import SettingsError, load_settings
from tests.gateway.conftest import Stack, _gateway
from tests.support.servers import free_port
from tests.support.waiting import eventually

MiB = 1024 * 1024
CAP = 40


@dataclass
class Gateway:
    address: tuple[str, int]
    pid: int
    upstream: socket.socket  # every cluster's address; nothing ever answers there

    def connect(self) -> socket.socket:
        sock = socket.create_connection(self.address)
        sock.settimeout(5)
        return sock

    def rss_mib(self) -> float:
        status = Path(f"/proc/{self.pid}/status").read_text()
        line = next(line for line in status.splitlines() if line.startswith("VmRSS:"))
        return int(line.split()[1]) / 1024

    def open_fds(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def forwarded(self) -> bool:
        """True if the gateway opened a connection to a backend."""
        readable, _, _ = select.select([self.upstream], [], [], 0)
        return bool(readable)


def _pid_with(marker: str) -> int:
    """The process started with ``marker`` in its environment (the gateway's only worker)."""
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and marker.encode() in (entry / "environ").read_bytes().split(b"\0"):
                return int(entry.name)
        except OSError:
            continue
    raise LookupError(marker)


def _start(stack: ExitStack, work: Path, name: str, limits: dict[str, str]) -> Gateway:
    upstream = stack.enter_context(socket.create_server(("127.0.0.1", 0)))
    backend = f"http://127.0.0.1:{upstream.getsockname()[1]}"
    marker = f"HTTP_LIMITS_TEST={uuid.uuid4().hex}"
    env = {
        "LEGACY_URL": backend,
        "REVIEWS_URL": backend,
        "RECOMMENDATIONS_URL": backend,
        "JWT_JWKS_URL": f"http://127.0.0.1:{free_port()}/jwks.json",  # nothing there: no keys, no traffic
        "GATEWAY_ACCESS_LOG": "false",
        marker.split("=")[0]: marker.split("=")[1],
        **limits,
    }
    url, _ = _gateway(stack, work, name, env, workers=1)
    parts = urlsplit(url)
    return Gateway(
        address=(str(parts.hostname), int(parts.port or 80)), pid=_pid_with(marker), upstream=upstream
    )


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """Short timeouts so the tests are quick; small limits so the attacks are cheap."""
    limits = {
        "GATEWAY_MAX_URL_BYTES": "2048",
        "GATEWAY_MAX_HEADER_BYTES": "4096",
        "GATEWAY_MAX_HEADERS": "20",
        "GATEWAY_HEADER_TIMEOUT": "1",
        "GATEWAY_BODY_TIMEOUT": "1",
        "GATEWAY_IDLE_TIMEOUT": "1",
    }
    with ExitStack() as stack:
        yield _start(stack, tmp_path_factory.mktemp("http-limits"), "gw-limits", limits)


@pytest.fixture(scope="module")
def capped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """A small connection cap and a long idle timeout, so held connections stay held."""
    limits = {"GATEWAY_MAX_CONNECTIONS": str(CAP), "GATEWAY_IDLE_TIMEOUT": "60"}
    with ExitStack() as stack:
        yield _start(stack, tmp_path_factory.mktemp("http-cap"), "gw-capped", limits)


def _read_until_closed(sock: socket.socket) -> bytes:
    """Everything the gateway sends until it closes; raises TimeoutError if it never closes."""
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk


def _read_response(sock: socket.socket) -> bytes:
    """One whole response with a Content-Length, on a connection that stays open."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(
        next(line for line in head.lower().split(b"\r\n") if line.startswith(b"content-length:")).split(b":")[
            1
        ]
    )
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


def _parse(raw: bytes) -> tuple[int, dict[str, str], dict[str, Any]]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, json.loads(body)


def _assert_envelope(raw: bytes, status: int, code: str) -> dict[str, str]:
    got_status, headers, body = _parse(raw)
    assert got_status == status, raw
    assert headers["content-type"] == "application/json"
    assert headers["connection"] == "close"
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    assert body["error"]["request_id"] == headers["x-request-id"]
    return headers


def test_an_oversize_url_is_refused_with_414_and_never_forwarded(gateway: Gateway) -> None:
    with gateway.connect() as sock:
        sock.sendall(b"GET /" + b"a" * 3000 + b" HTTP/1.1\r\nHost: shop\r\n\r\n")
        _assert_envelope(_read_until_closed(sock), 414, "url_too_long")
    assert not gateway.forwarded()


def test_oversize_headers_are_refused_with_431_and_never_forwarded(gateway: Gateway) -> None:
    with gateway.connect() as sock:
        sock.sendall(b"GET /x HTTP/1.1\r\nHost: shop\r\nX-Big: " + b"b" * 5000 + b"\r\n\r\n")
        _assert_envelope(_read_until_closed(sock), 431, "headers_too_large")
    with gateway.connect() as sock:  # 21 small headers: only their number is over
        sock.sendall(b"GET /x HTTP/1.1\r\n" + b"".join(b"X-H%d: 1\r\n" % i for i in range(21)) + b"\r\n")
        _assert_envelope(_read_until_closed(sock), 431, "headers_too_large")
    assert not gateway.forwarded()


UNFINISHED = {
    "header": b"GET /x HTTP/1.1\r\nHost: shop\r\nX-Big: ",
    "trailer": b"POST /x HTTP/1.1\r\nHost: shop\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5\r\nhello\r\n0\r\nX-Big: ",
}


@pytest.mark.parametrize("where", UNFINISHED)
def test_many_unfinished_huge_headers_leave_memory_bounded(gateway: Gateway, where: str) -> None:
    # Before the limits: 100 connections x 8 MiB of header took a gateway from 77 to 909 MiB. The
    # parser buffers a chunked body's trailer fields the same way.
    before = gateway.rss_mib()
    chunk = b"b" * 65536
    with ExitStack() as stack:
        socks = [stack.enter_context(gateway.connect()) for _ in range(40)]
        for sock in socks:
            try:
                sock.sendall(UNFINISHED[where])
                for _ in range(8 * MiB // len(chunk)):
                    sock.sendall(chunk)
            except OSError:
                pass  # refused and closed by the gateway mid-send: what should happen
        after = gateway.rss_mib()  # measured while every connection is still open on our side
        assert after - before < 100, f"RSS grew from {before:.0f} to {after:.0f} MiB"
        for sock in socks:
            _read_until_closed(sock)  # each one was closed by the gateway


def test_a_header_sent_one_byte_at_a_time_is_cut_off_with_408(gateway: Gateway) -> None:
    with gateway.connect() as sock:
        sock.setblocking(False)
        sock.sendall(b"GET /x HTTP/1.1\r\nHost: shop\r\nX-Slow: ")
        received = bytearray()

        def drip_until_closed() -> bool:
            try:
                chunk = sock.recv(65536)
            except BlockingIOError:
                sock.send(b"s")  # never finishes the header
                return False
            except ConnectionResetError:
                return True
            received.extend(chunk)
            return not chunk

        assert eventually(drip_until_closed, timeout=15, interval=0.05)
    _assert_envelope(bytes(received), 408, "request_timeout")
    assert not gateway.forwarded()


@pytest.mark.parametrize("expect", [b"", b"Expect: 100-continue\r\n"], ids=["content-length", "expect-100"])
def test_a_body_that_never_comes_gets_408_and_the_connection_is_closed(
    gateway: Gateway, expect: bytes
) -> None:
    with gateway.connect() as sock:
        sock.settimeout(15)  # a bound, not a target: the body timeout is 1 s
        sock.sendall(b"POST /x HTTP/1.1\r\nHost: shop\r\nContent-Length: 10\r\n" + expect + b"\r\n")
        raw = _read_until_closed(sock)
    if expect:
        interim, _, raw = raw.partition(b"\r\n\r\n")
        assert interim == b"HTTP/1.1 100 Continue"
    _assert_envelope(raw, 408, "request_timeout")
    assert not gateway.forwarded()


def test_idle_connections_are_closed(gateway: Gateway) -> None:
    with gateway.connect() as sock:
        sock.settimeout(15)  # a bound: the idle timeout is 1 s
        assert _read_until_closed(sock) == b""  # never sent a request: closed without an answer
    with gateway.connect() as sock:  # keep-alive: idle after its answer
        sock.settimeout(15)
        sock.sendall(b"GET /_gateway/health HTTP/1.1\r\nHost: shop\r\n\r\n")
        raw = _read_until_closed(sock)
    assert raw.startswith(b"HTTP/1.1 200 ") and raw.endswith(b'{"status":"ok"}')


def test_connections_beyond_the_cap_get_503_and_descriptors_stay_bounded(capped: Gateway) -> None:
    # Before the cap: 2,000 idle connections took a gateway from 19 to 2,019 descriptors.
    before = capped.open_fds()
    with ExitStack() as stack:
        held = [stack.enter_context(capped.connect()) for _ in range(CAP)]
        assert eventually(lambda: capped.open_fds() >= before + CAP)
        refused = [stack.enter_context(capped.connect()) for _ in range(3 * CAP)]
        for sock in refused:
            sock.sendall(b"GET /_gateway/health HTTP/1.1\r\nHost: shop\r\n\r\n")
            headers = _assert_envelope(_read_until_closed(sock), 503, "unavailable")
            assert headers["retry-after"] == "1"
        assert capped.open_fds() <= before + CAP
        held[0].sendall(b"GET /_gateway/health HTTP/1.1\r\nHost: shop\r\n\r\n")
        assert _read_response(held[0]).startswith(b"HTTP/1.1 200 ")  # the admitted ones are served
    assert not capped.forwarded()


def test_at_the_default_limits_the_gateway_refuses_what_legacy_would(stack: Stack) -> None:
    # Legacy (gunicorn) refuses request lines over 4,094 bytes, header lines over 8,190 and more than
    # 100 headers with HTML pages; before the limits those pages reached clients.
    limits = HttpLimits.from_settings(load_settings({}))
    path = "/api/v1/no-such-page/"
    path += "a" * (limits.max_url_bytes - len(path))
    filler = {f"x-h{i}": "1" for i in range(limits.max_headers - 7)}  # httpx adds host, accept, ...
    big = {"x-big": "b" * (limits.max_header_line_bytes - 10)}
    admitted = httpx.get(f"{stack.gateway}{path}", headers={**filler, **big})
    assert admitted.status_code == 404 and admitted.headers["x-served-by"] == "legacy", admitted.text
    assert admitted.json()["error"]["code"]
    refused = [
        httpx.get(f"{stack.gateway}{path}a"),
        httpx.get(f"{stack.gateway}/api/v1/items/1", headers={"x-big": "b" * limits.max_header_line_bytes}),
        httpx.get(
            f"{stack.gateway}/api/v1/items/1", headers={**filler, **{f"x-more{i}": "1" for i in range(8)}}
        ),
    ]
    assert [(r.status_code, r.headers["x-served-by"]) for r in refused] == [
        (414, "gateway"),
        (431, "gateway"),
        (431, "gateway"),
    ]
    assert [r.json()["error"]["code"] for r in refused] == [
        "url_too_long",
        "headers_too_large",
        "headers_too_large",
    ]


def test_keep_alive_requests_still_work(gateway: Gateway, capped: Gateway) -> None:
    for target in (gateway, capped):
        with target.connect() as sock:
            for _ in range(3):
                sock.sendall(b"GET /_gateway/health HTTP/1.1\r\nHost: shop\r\nX-Request-Id: ka-1\r\n\r\n")
                answer = _read_response(sock)
                assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b'{"status":"ok"}')


def test_limits_come_from_the_environment_with_sane_defaults() -> None:
    defaults = HttpLimits.from_settings(load_settings({}))
    assert (defaults.max_url_bytes, defaults.max_header_line_bytes, defaults.max_headers) == (4000, 8000, 64)
    assert defaults.max_header_bytes == 32768
    assert (defaults.header_timeout, defaults.body_timeout, defaults.idle_timeout) == (10, 15, 15)
    assert 1 <= defaults.max_connections <= 4096
    assert defaults.max_head_bytes > defaults.max_url_bytes + defaults.max_header_bytes
    assert [timeout_for(phase, defaults) for phase in (WAITING, HEAD, BODY)] == [15, 10, 15]
    assert defaults.tick == 1
    tuned = load_settings({"GATEWAY_MAX_CONNECTIONS": "7", "GATEWAY_HEADER_TIMEOUT": "0.5"})
    assert (tuned.max_connections, tuned.header_timeout) == (7, 0.5)
    for bad in ("0", "-1", "many"):
        with pytest.raises(SettingsError, match="GATEWAY_MAX_HEADERS"):
            load_settings({"GATEWAY_MAX_HEADERS": bad})


def test_error_response_is_one_complete_http_answer_in_the_envelope() -> None:
    raw = error_response(431, "headers_too_large", "Too large.", "rid-1", ((b"retry-after", b"1"),))
    assert raw.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")
    status, headers, body = _parse(raw)
    assert (status, headers["content-length"], headers["retry-after"]) == (
        431,
        str(len(raw.split(b"\r\n\r\n")[1])),
        "1",
    )
    assert body == {"error": {"code": "headers_too_large", "message": "Too large.", "request_id": "rid-1"}}
