"""The request path in process: ``proxy.handle`` with the real route table, flags and breakers, and a
fake upstream pool per cluster (what each backend answers is scripted; nothing listens on a port)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from flags import Flags
from flags.model import Override
from flags.overrides import FileOverrideStore
from gateway.accesslog import AccessLog
from gateway.app import GatewayApp
from gateway.auth import Jwks, TokenVerifier
from gateway.errors import UpstreamConnectError, UpstreamError
from gateway.limiter import AdaptiveLimit, LimitPolicy
from gateway.live import LiveStats
from gateway.metrics import Metrics
from gateway.proxy import handle
from gateway.resilience import HALF_OPEN, OPEN, RetryBudget
from gateway.routes import build_table, load_table
from gateway.runtime import Routing, Runtime, build_upstreams
from gateway.settings import DEFAULT_ROUTES_FILE, load_settings
from gateway.shadow import Shadow

URLS = {
    "legacy": "http://127.0.0.1:9",
    "reviews": "http://127.0.0.1:9",
    "recommendations": "http://127.0.0.1:9",
}
SUMMARY = "/api/v1/reviews/items/1/summary"
_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
_TOKEN = jwt.encode(
    {"sub": "7", "iat": int(time.time()), "exp": int(time.time()) + 3600, "iss": "i", "aud": "a"},
    _KEY,
    algorithm="RS256",
    headers={"kid": "k1"},
)
SIGNED_IN = [(b"authorization", f"Bearer {_TOKEN}".encode())]


@dataclass
class FakeResponse:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes
    fail_after: int | None = None  # chunks sent before the backend "dies"
    released: list[bool] = field(default_factory=list)

    async def chunks(self) -> AsyncIterator[bytes]:
        for index in range(0, len(self.body), 4):
            if self.fail_after is not None and index // 4 >= self.fail_after:
                raise UpstreamError("response_body", "reset mid-body")
            yield self.body[index : index + 4]

    async def read(self) -> bytes:
        return b"".join([chunk async for chunk in self.chunks()])

    def release(self, *, reusable: bool) -> None:
        self.released.append(reusable)


class FakePool:
    """Answers with what ``script`` returns for (method, target, headers, body); records every call."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.calls: list[tuple[str, bytes, list[tuple[bytes, bytes]], bytes]] = []
        self.script: Callable[..., Any] = lambda *_: _json(200, b'{"ok":true}')
        self.gate: asyncio.Event | None = None

    async def request(
        self, method: str, target: bytes, headers: Any, body: bytes = b"", **_: Any
    ) -> FakeResponse:
        self.calls.append((method, target, list(headers), body))
        if self.gate is not None:
            await self.gate.wait()
        answer = self.script(method, target, headers, body)
        if isinstance(answer, BaseException):
            raise answer
        return answer  # type: ignore[no-any-return]

    async def close(self) -> None:
        pass


def _json(status: int, body: bytes, length: bool = True) -> FakeResponse:
    headers = [(b"content-type", b"application/json")]
    if length:
        headers.append((b"content-length", str(len(body)).encode()))
    return FakeResponse(status, headers, body)


@pytest.fixture
def rt(tmp_path: Path) -> Runtime:
    settings = load_settings({"VAR_DIR": str(tmp_path), "GATEWAY_ACCESS_LOG": "false"})
    table = load_table(DEFAULT_ROUTES_FILE, URLS)
    metrics = Metrics.create()
    upstreams = build_upstreams(table, metrics)
    for name, upstream in upstreams.items():
        upstream.pool = FakePool(name)  # type: ignore[assignment]
    store = FileOverrideStore(tmp_path / "overrides.json", tmp_path / "audit.jsonl")
    jwks = Jwks("http://127.0.0.1:9/jwks", httpx.AsyncClient())
    jwks.keys = {"k1": (_KEY.public_key(), "RS256")}
    return Runtime(
        settings=settings,
        routing=Routing(table=table, upstreams=upstreams),
        flags=Flags(overrides=store, providers=[]),
        verifier=TokenVerifier(jwks, issuer="i", audience="a"),
        metrics=metrics,
        retry_budget=RetryBudget(),
        shadow=Shadow(),
        live=LiveStats(),
        access_log=AccessLog(enabled=False),
    )


def pool(rt: Runtime, cluster: str) -> FakePool:
    return rt.upstreams[cluster].pool  # type: ignore[return-value]


def to_candidate(rt: Runtime, route: str) -> None:
    override = Override(
        route=route, backend="candidate", reason="test", actor="test", at=time.time(), percent=None
    )
    rt.flags.overrides.apply([(route, override)], actor="test", reason="test")


@dataclass
class Answer:
    status: int
    headers: dict[bytes, bytes]
    body: bytes
    complete: bool


async def call(
    rt: Runtime,
    method: str,
    path: str,
    headers: list[tuple[bytes, bytes]] | None = None,
    body: bytes = b"",
    app: Any = None,
) -> Answer:
    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": headers or [],
        "client": ("203.0.113.7", 5000),
        "scheme": "http",
    }
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    if app is None:
        await handle(rt, scope, receive, send)
    else:
        await app(scope, receive, send)
    start = sent[0]
    bodies = [m for m in sent[1:] if m["type"] == "http.response.body"]
    return Answer(
        status=start["status"],
        headers=dict(start["headers"]),
        body=b"".join(m.get("body", b"") for m in bodies),
        complete=bool(bodies) and not bodies[-1].get("more_body", False),
    )


def sample(rt: Runtime, name: str, **labels: str) -> float:
    value = rt.metrics.registry.get_sample_value(name, labels)
    return value or 0.0


def test_a_legacy_answer_is_relayed_with_the_request_id_and_who_served(rt: Runtime):
    answer = asyncio.run(call(rt, "GET", SUMMARY))
    assert answer.status == 200 and answer.body == b'{"ok":true}'
    assert answer.headers[b"x-served-by"] == b"legacy"
    assert len(answer.headers[b"x-request-id"]) == 32
    labels = {"route": "reviews.summary", "backend": "legacy", "cluster": "legacy", "status_class": "2xx"}
    assert sample(rt, "gateway_requests_total", **labels) == 1


def test_backend_and_cluster_mean_one_thing_each_in_the_metrics(rt: Runtime):
    to_candidate(rt, "reviews.summary")
    asyncio.run(call(rt, "GET", SUMMARY))
    labels = {"route": "reviews.summary", "backend": "candidate", "cluster": "reviews", "status_class": "2xx"}
    assert sample(rt, "gateway_requests_total", **labels) == 1
    assert rt.live.snapshot()["reviews.summary"]["candidate"]["requests"] == 1


def test_headers_named_in_connection_and_proxy_headers_are_not_forwarded(rt: Runtime):
    headers = [
        (b"connection", b"keep-alive, x-secret-hop"),
        (b"x-secret-hop", b"1"),
        (b"forwarded", b"for=1.2.3.4"),
        (b"x-real-ip", b"1.2.3.4"),
        (b"x-original-url", b"/admin"),
        (b"x-forwarded-for", b"1.2.3.4"),
        (b"accept-language", b"ko"),
    ]
    asyncio.run(call(rt, "GET", SUMMARY, headers))
    (_, _, forwarded, _) = pool(rt, "legacy").calls[0]
    names = [name for name, _ in forwarded]
    for dropped in (b"x-secret-hop", b"forwarded", b"x-real-ip", b"x-original-url", b"connection"):
        assert dropped not in names
    assert (b"x-forwarded-for", b"203.0.113.7") in forwarded, "ours, not the client's"
    assert (b"accept-language", b"ko") in forwarded


@pytest.mark.parametrize("method", ["TRACE", "CONNECT", "BREW"])
def test_methods_no_route_allows_are_refused_not_forwarded(rt: Runtime, method: str):
    answer = asyncio.run(call(rt, method, "/api/v1/items/1"))
    assert answer.status == 405
    assert b'"code":"method_not_allowed"' in answer.body
    assert b"GET" in answer.headers[b"allow"]
    assert pool(rt, "legacy").calls == []


def test_a_body_that_fails_after_the_response_started_is_counted_as_a_failure(rt: Runtime):
    """Truncated used to escape to the server while the metrics counted a 2xx."""
    to_candidate(rt, "reviews.summary")
    reviews = pool(rt, "reviews")
    truncated = FakeResponse(200, [(b"content-type", b"application/json")], b"x" * 40, fail_after=2)
    reviews.script = lambda *_: truncated
    answer = asyncio.run(call(rt, "GET", SUMMARY))  # returns: nothing escapes handle
    assert answer.status == 200 and not answer.complete, "the client sees a short body, then a close"
    assert truncated.released == [False]
    labels = {"route": "reviews.summary", "backend": "candidate", "cluster": "reviews", "status_class": "5xx"}
    assert sample(rt, "gateway_requests_total", **labels) == 1
    assert sample(rt, "gateway_upstream_errors_total", cluster="reviews", stage="response_body") == 1


def test_a_buffered_body_that_fails_is_a_502_and_a_breaker_failure(rt: Runtime):
    to_candidate(rt, "reviews.create")
    broken = _json(200, b"x" * 40)
    broken.fail_after = 1
    pool(rt, "reviews").script = lambda *_: broken
    answer = asyncio.run(call(rt, "POST", "/api/v1/reviews", SIGNED_IN, b"{}"))
    assert answer.status == 502 and b'"code":"bad_gateway"' in answer.body
    assert sample(rt, "gateway_upstream_errors_total", cluster="reviews", stage="response_body") == 1


def _open_breaker(rt: Runtime, cluster: str) -> None:
    breaker = rt.upstreams[cluster].breaker
    for _ in range(breaker.policy.connect_failures):
        breaker.record(False, connect_failure=True)
    assert breaker.state == OPEN


def test_an_open_candidate_breaker_routes_to_legacy_without_spending_the_retry_budget(rt: Runtime):
    """A candidate outage must not become 503s once the fallback budget is spent (seen: 78 % of GETs)."""
    to_candidate(rt, "reviews.summary")
    to_candidate(rt, "reviews.create")
    _open_breaker(rt, "reviews")
    rt.retry_budget.tokens = 0.0
    for _ in range(50):
        answer = asyncio.run(call(rt, "GET", SUMMARY))
        assert answer.status == 200 and answer.headers[b"x-served-by"] == b"legacy"
    post = asyncio.run(call(rt, "POST", "/api/v1/reviews", SIGNED_IN, b'{"item_id":1}'))
    assert post.status == 200 and post.headers[b"x-served-by"] == b"legacy", (
        "a routing decision, not a replay"
    )
    assert pool(rt, "reviews").calls == [], "nothing was sent to the open candidate"
    assert len(pool(rt, "legacy").calls) == 51
    labels = {"route": "reviews.summary", "backend": "legacy", "reason": "circuit_open"}
    assert sample(rt, "gateway_flag_decisions_total", **labels) == 50


def test_the_breaker_gauge_follows_the_breaker_without_traffic(rt: Runtime):
    _open_breaker(rt, "reviews")
    assert sample(rt, "gateway_breaker_state", cluster="reviews") == 2
    assert sample(rt, "gateway_breaker_state", cluster="legacy") == 0


def _half_open(rt: Runtime, cluster: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _open_breaker(rt, cluster)
    later = time.monotonic() + rt.upstreams[cluster].breaker.policy.open_seconds + 1
    monkeypatch.setattr("gateway.resilience.time.monotonic", lambda: later)


def test_a_request_refused_by_the_full_bulkhead_does_not_take_the_probe(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch
):
    to_candidate(rt, "reviews.create")
    _half_open(rt, "reviews", monkeypatch)
    upstream = rt.upstreams["reviews"]
    upstream.bulkhead.in_flight = upstream.bulkhead.max_in_flight  # full: this request is refused
    answer = asyncio.run(call(rt, "POST", "/api/v1/reviews", SIGNED_IN, b"{}"))
    assert answer.status == 503
    assert upstream.breaker.state == OPEN, "the refused request did not take the probe"
    upstream.bulkhead.in_flight = 0
    answer = asyncio.run(call(rt, "POST", "/api/v1/reviews", SIGNED_IN, b"{}"))
    assert answer.headers[b"x-served-by"] == b"reviews", "the next request is the probe"
    assert upstream.breaker.state == "closed"


def test_a_cancelled_probe_does_not_leave_the_breaker_half_open(rt: Runtime, monkeypatch: pytest.MonkeyPatch):
    to_candidate(rt, "reviews.create")
    _half_open(rt, "reviews", monkeypatch)
    reviews = pool(rt, "reviews")

    async def scenario() -> Answer:
        reviews.gate = asyncio.Event()
        probe = asyncio.create_task(call(rt, "POST", "/api/v1/reviews", SIGNED_IN, b"{}"))
        while not reviews.calls:
            await asyncio.sleep(0)
        assert rt.upstreams["reviews"].breaker.state == HALF_OPEN
        probe.cancel()  # the client went away while the probe was in flight
        with pytest.raises(asyncio.CancelledError):
            await probe
        reviews.gate = None
        return await call(rt, "POST", "/api/v1/reviews", SIGNED_IN, b"{}")

    answer = asyncio.run(scenario())
    assert answer.headers[b"x-served-by"] == b"reviews", "a new probe went through"
    assert rt.upstreams["reviews"].breaker.state == "closed"


def test_a_dead_candidate_falls_back_for_get_but_never_for_post(rt: Runtime):
    to_candidate(rt, "reviews.summary")
    to_candidate(rt, "reviews.create")
    pool(rt, "reviews").script = lambda *_: UpstreamConnectError("connect", "refused")
    get = asyncio.run(call(rt, "GET", SUMMARY))
    assert get.status == 200 and get.headers[b"x-served-by"] == b"legacy"
    post = asyncio.run(call(rt, "POST", "/api/v1/reviews", SIGNED_IN, b"{}"))
    assert post.status == 502 and post.headers[b"x-served-by"] == b"gateway"
    assert [c[0] for c in pool(rt, "legacy").calls] == ["GET"], "the POST was not replayed on legacy"


def test_a_reload_that_adds_a_cluster_serves_it(rt: Runtime, tmp_path: Path):
    """The reload used to swap the table but not the clusters: a new cluster was a KeyError."""
    document = {
        "default_cluster": "legacy",
        "clusters": {
            "legacy": {"url": "http://127.0.0.1:9", "limiter": {}},  # as shipped (default limits)
            "wishlist": {"url": "http://127.0.0.1:9"},
        },
        "routes": [{"id": "wishlist.list", "path": "/api/v1/wishlist", "candidate": "wishlist"}],
    }
    old_legacy = rt.upstreams["legacy"]
    dropped = set(rt.upstreams) - {"legacy"}  # every shipped candidate cluster: reviews, recommendations, …
    retired = rt.with_table(build_table(document, {}))
    assert {r.cluster.name for r in retired} == dropped and "reviews" in dropped
    assert rt.upstreams["legacy"] is old_legacy, "an unchanged cluster keeps its pool and breaker"
    rt.upstreams["wishlist"].pool = FakePool("wishlist")  # type: ignore[assignment]
    to_candidate(rt, "wishlist.list")
    answer = asyncio.run(call(rt, "GET", "/api/v1/wishlist"))
    assert answer.status == 200 and answer.headers[b"x-served-by"] == b"wishlist"


def test_a_websocket_upgrade_gets_a_400_envelope(rt: Runtime):
    app = GatewayApp(rt.settings)
    app.runtime = rt
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "websocket", "path": "/api/v1/reviews", "extensions": {"websocket.http.response": {}}}
    asyncio.run(app(scope, receive, send))
    assert sent[0]["type"] == "websocket.http.response.start" and sent[0]["status"] == 400
    assert b'"code":"bad_request"' in sent[1]["body"]


def test_a_backend_that_drops_the_connection_after_the_request_does_not_count_as_unreachable(rt: Runtime):
    """Clients can crash a backend process with a request; only a refused connect means it is gone."""
    to_candidate(rt, "reviews.create")
    pool(rt, "reviews").script = lambda *_: UpstreamConnectError("response_headers", "closed")
    for _ in range(rt.upstreams["reviews"].breaker.policy.connect_failures + 1):
        assert asyncio.run(call(rt, "POST", "/api/v1/reviews", SIGNED_IN, b"{}")).status == 502
    assert rt.upstreams["reviews"].breaker.state == "closed"


def test_a_reload_during_a_request_does_not_pull_its_cluster_away(rt: Runtime):
    """The request keeps the table and upstreams it matched with, even if a reload drops its cluster."""
    to_candidate(rt, "reviews.create")
    reviews = pool(rt, "reviews")

    async def scenario() -> Answer:
        reviews.gate = asyncio.Event()
        request = asyncio.create_task(call(rt, "POST", "/api/v1/reviews", SIGNED_IN, b"{}"))
        while not reviews.calls:
            await asyncio.sleep(0)
        only_legacy = {
            "default_cluster": "legacy",
            "clusters": {"legacy": {"url": "http://127.0.0.1:9"}},
            "routes": [],
        }
        rt.with_table(build_table(only_legacy, {}))
        reviews.gate.set()
        return await request

    answer = asyncio.run(scenario())
    assert answer.status == 200 and answer.headers[b"x-served-by"] == b"reviews"
    labels = {"route": "reviews.create", "backend": "candidate", "cluster": "reviews", "status_class": "2xx"}
    assert sample(rt, "gateway_requests_total", **labels) == 1


def test_no_shadow_goes_to_a_backend_whose_breaker_is_open(rt: Runtime):
    route = {
        "id": "reviews.summary",
        "path": "/api/v1/reviews/items/{item_id}/summary",
        "candidate": "reviews",
    }
    document = {
        "default_cluster": "legacy",
        "clusters": {name: {"url": "http://127.0.0.1:9"} for name in ("legacy", "reviews")},
        "routes": [{**route, "shadow": {"sample_rate": 1.0}}],
    }
    rt.with_table(build_table(document, {}))
    for name in ("legacy", "reviews"):
        rt.upstreams[name].pool = FakePool(name)  # type: ignore[assignment]

    async def scenario() -> tuple[Answer, int]:
        answer = await call(rt, "GET", SUMMARY)
        return answer, len(rt.shadow.tasks)  # read before the loop ends and cancels what is left

    answer, shadows = asyncio.run(scenario())
    assert answer.headers[b"x-served-by"] == b"legacy" and shadows == 1, "shadowing is on"
    _open_breaker(rt, "reviews")
    answer, shadows = asyncio.run(scenario())
    assert answer.status == 200 and shadows == 0


def test_beyond_legacys_adaptive_limit_a_request_is_shed_with_503_and_retry_after(rt: Runtime):
    rt.upstreams["legacy"].limiter = AdaptiveLimit(
        LimitPolicy(initial_limit=1, min_limit=1, max_queue=1, max_wait_seconds=0.01)
    )
    legacy = pool(rt, "legacy")

    async def scenario() -> Answer:
        legacy.gate = asyncio.Event()
        held = asyncio.create_task(call(rt, "GET", SUMMARY))  # takes the one slot and waits
        while not legacy.calls:
            await asyncio.sleep(0)
        shed = await call(rt, "GET", "/api/v1/items/1")  # queues 10 ms, then is shed
        legacy.gate.set()
        assert (await held).status == 200
        return shed

    shed = asyncio.run(scenario())
    assert shed.status == 503 and shed.headers[b"retry-after"] == b"1"
    assert b'"code":"overloaded"' in shed.body
    assert len(legacy.calls) == 1, "the shed request never reached legacy"
    assert sample(rt, "gateway_shed_total", cluster="legacy", route="unmatched") == 1
    assert rt.live.clusters()["legacy"]["shed"] == 1
    assert rt.upstreams["legacy"].limiter.in_flight == 0  # type: ignore[union-attr]


def test_a_shadow_never_takes_legacys_last_slot_or_queues_for_it(rt: Runtime):
    """With routes on the candidate, shadows to a saturated legacy would add to its load."""
    document = {
        "default_cluster": "legacy",
        "clusters": {
            "legacy": {"url": "http://127.0.0.1:9", "limiter": {}},
            "reviews": {"url": "http://127.0.0.1:9"},
        },
        "routes": [
            {
                "id": "reviews.summary",
                "path": "/api/v1/reviews/items/{item_id}/summary",
                "candidate": "reviews",
                "shadow": {"sample_rate": 1.0},
            }
        ],
    }
    rt.with_table(build_table(document, {}))
    for name in ("legacy", "reviews"):
        rt.upstreams[name].pool = FakePool(name)  # type: ignore[assignment]
    rt.upstreams["legacy"].limiter = AdaptiveLimit(LimitPolicy(initial_limit=1, min_limit=1))
    to_candidate(rt, "reviews.summary")
    limiter = rt.upstreams["legacy"].limiter

    async def scenario() -> None:
        assert limiter.try_acquire()  # a real request holds legacy's only slot
        answer = await call(rt, "GET", SUMMARY)
        assert answer.headers[b"x-served-by"] == b"reviews"
        await asyncio.gather(*rt.shadow.tasks)
        assert pool(rt, "legacy").calls == [], "no shadow while legacy is at its limit"
        assert limiter.queued == 0 and limiter.shed == 0
        limiter.release(0.01)
        await call(rt, "GET", SUMMARY)
        await asyncio.gather(*rt.shadow.tasks)
        assert len(pool(rt, "legacy").calls) == 1, "a free slot: the shadow goes"
        assert limiter.in_flight == 0, "and gives its slot back"

    asyncio.run(scenario())


def test_an_endpoints_ordinary_500s_do_not_shrink_legacys_limit(rt: Runtime):
    limiter = AdaptiveLimit(LimitPolicy(initial_limit=10, window_seconds=1e-9, min_samples=1))
    rt.upstreams["legacy"].limiter = limiter
    pool(rt, "legacy").script = lambda *_: _json(500, b'{"error":{}}')
    for _ in range(10):  # fewer than the breaker's minimum volume
        asyncio.run(call(rt, "GET", "/api/v1/items/1"))
    assert limiter.limit >= 10, "a bug's 500 says nothing about legacy's capacity"
    pool(rt, "legacy").script = lambda *_: _json(503, b'{"error":{}}')
    asyncio.run(call(rt, "GET", "/api/v1/items/1"))
    assert limiter.limit < 10, "a 503 is overload"
