"""A saturated monolith does no work for requests whose deadline passed while they queued.

Legacy runs under gunicorn with one worker and one thread. A client that sends only part of a request
head holds that thread (it blocks reading the rest), so everything sent after it waits in gunicorn's
queue. The tests let the queued requests' deadlines pass, release the thread, and check that the late
ones were answered 503 ``deadline_exceeded`` and wrote nothing, while those still in time were served.
Nothing sleeps: the tests wait for the clock to pass a deadline, or for an answer.
"""

from __future__ import annotations

import json
import select
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.gateway.conftest import SECRET, _gateway
from tests.support.servers import free_port, legacy_env, legacy_server, manage
from tests.support.signing import signed
from tests.support.waiting import eventually

ROUTES = Path(__file__).parents[2] / "gateway" / "routes.toml"
REVIEWS = "/api/v1/reviews"
MINE = "/api/v1/reviews/me?size=100"
USER_ID = "5"  # demo5


@dataclass
class Stack:
    legacy: tuple[str, int]
    gateway: str


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    work = tmp_path_factory.mktemp("saturated")
    env = legacy_env(work, f"sqlite:///{work / 'legacy.sqlite3'}", SECRET)
    for args in (["migrate", "-v0"], ["signing_keys", "ensure"], ["seed", "--scale", "small"]):
        manage(env, *args)
    # The gateway gives up on legacy quickly here, so its deadline passes soon after it is sent.
    routes = ROUTES.read_text()
    legacy_timeouts = "connect_timeout = 1.0\nread_timeout = 15.0\n"
    assert routes.count(legacy_timeouts) == 1, "the legacy cluster's timeouts moved: update this test"
    routes_file = work / "routes.toml"
    routes_file.write_text(routes.replace(legacy_timeouts, "connect_timeout = 0.2\nread_timeout = 0.5\n"))
    with ExitStack() as stack:
        legacy = stack.enter_context(legacy_server(env, work / "legacy.log", threads=1))
        gateway, _ = _gateway(
            stack,
            work,
            "gw-saturated",
            {
                "LEGACY_URL": legacy,
                "REVIEWS_URL": f"http://127.0.0.1:{free_port()}",  # flags are off: never called
                "RECOMMENDATIONS_URL": f"http://127.0.0.1:{free_port()}",
                "ROUTES_FILE": str(routes_file),
            },
            workers=1,
        )
        parts = urlsplit(legacy)
        yield Stack(legacy=(parts.hostname or "127.0.0.1", parts.port or 80), gateway=gateway)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _raw(method: str, path: str, headers: dict[str, str], body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: legacy", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if body:
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def _signed(method: str, target: str, body: bytes = b"", deadline: int | None = None) -> dict[str, str]:
    return signed(
        SECRET,
        method,
        target,
        user_id=USER_ID,
        scopes="user",
        body=body,
        request_id=f"sat-{time.monotonic_ns()}",
        deadline=deadline,
    )


def _send(stack: Stack, request: bytes) -> socket.socket:
    sock = socket.create_connection(stack.legacy, timeout=10)
    sock.sendall(request)
    return sock


def _answer(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    data = b""
    with sock:
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value for name, _, value in (line.partition(": ") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def _reviewed(stack: Stack) -> set[int]:
    """The items demo5 has reviewed, asked of legacy directly. With one thread, this answer also
    means every request queued before it has been handled."""
    status, _, body = _answer(_send(stack, _raw("GET", MINE, _signed("GET", MINE))))
    assert status == 200, body
    return {review["item_id"] for review in json.loads(body)["items"]}


def _unreviewed(stack: Stack, count: int) -> list[int]:
    return sorted(set(range(1, 200)) - _reviewed(stack))[:count]


def _review(item: int) -> bytes:
    return json.dumps({"item_id": item, "rating": 3, "body": "queued"}).encode()


class _Hold:
    """Holds legacy's only thread: half a request head, finished by ``release``."""

    def __init__(self, stack: Stack) -> None:
        self.sock = _send(stack, b"GET /api/v1/items/1 HTTP/1.1\r\nHost: legacy\r\nConnection: close\r\n")

    def release(self) -> int:
        self.sock.sendall(b"\r\n")
        return _answer(self.sock)[0]


def _answered(sock: socket.socket) -> bool:
    return bool(select.select([sock], [], [], 0)[0])


def test_signed_requests_that_queue_past_their_deadline_are_refused_unexecuted(stack: Stack) -> None:
    late_items, (kept_item,) = (items := _unreviewed(stack, 4))[:3], items[3:]
    hold = _Hold(stack)
    deadline = _now_ms() + 1_000
    late = [
        _send(stack, _raw("POST", REVIEWS, _signed("POST", REVIEWS, _review(item), deadline), _review(item)))
        for item in late_items
    ]
    in_time = _send(
        stack,
        _raw(
            "POST",
            REVIEWS,
            _signed("POST", REVIEWS, _review(kept_item), _now_ms() + 60_000),
            _review(kept_item),
        ),
    )
    no_deadline = _send(stack, _raw("GET", "/api/v1/items/2", {}))
    assert eventually(lambda: _now_ms() > deadline + 50), "the clock did not pass the deadline"
    assert not any(_answered(sock) for sock in [*late, in_time, no_deadline]), "not queued behind the hold"
    assert hold.release() == 200

    for sock in late:
        status, headers, body = _answer(sock)
        assert status == 503, body
        assert headers["retry-after"] == "1"
        assert json.loads(body)["error"]["code"] == "deadline_exceeded"
    assert _answer(in_time)[0] == 201
    assert _answer(no_deadline)[0] == 200
    reviewed = _reviewed(stack)
    assert kept_item in reviewed
    assert not reviewed & set(late_items), "a request past its deadline was executed"


def test_requests_the_gateway_gave_up_on_are_not_executed_by_legacy(stack: Stack) -> None:
    # The whole scene: clients post through the gateway while legacy is saturated; the gateway stops
    # waiting (504 after its 0.5 s read timeout), and its signed deadline (now + 0.2 s connect + 0.5 s
    # read) has passed by the time legacy gets to the requests.
    # From legacy directly: a password check may take longer than this gateway's 0.5 s read timeout.
    credentials = json.dumps({"username": "demo5", "password": "demo-password"}).encode()
    status, _, body = _answer(_send(stack, _raw("POST", "/api/v1/auth/token", {}, credentials)))
    assert status == 200, body
    token = json.loads(body)["access_token"]
    items = _unreviewed(stack, 3)
    hold = _Hold(stack)

    def post(item: int) -> tuple[int, float]:
        response = httpx.post(
            f"{stack.gateway}{REVIEWS}",
            content=_review(item),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            timeout=10,
        )
        return response.status_code, time.time()

    with ThreadPoolExecutor(len(items)) as pool:
        results = list(pool.map(post, items))
    assert [status for status, _ in results] == [504] * len(items)
    # Each deadline was signed before its 504 came back, so it is at most 0.7 s after that.
    latest = max(answered for _, answered in results)
    assert eventually(lambda: time.time() > latest + 0.7 + 0.05), "the clock did not pass the deadlines"
    assert hold.release() == 200
    assert not _reviewed(stack) & set(items), "legacy executed requests nobody was waiting for"
