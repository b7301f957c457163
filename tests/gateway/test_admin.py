"""The admin API and the ops console at their edges: a silent Redis never stalls the proxy path,
hostile override requests are refused before anything is written, bad stored lines are skipped,
every error is the JSON envelope, and the console is served under a strict CSP.

The gateways here are this module's own (one worker, their own VAR_DIR) in front of the session
stack's real backends, so poisoning their files touches no other test.
"""

from __future__ import annotations

import json
import os
import re
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
import redis
from starlette.testclient import TestClient

from flags import ensure_flags_file, load_flags_settings
from gateway.admin import admin_app
from tests.conftest import require_service
from tests.gateway.conftest import ADMIN_TOKEN, SECRET, Stack
from tests.support.blackhole import Blackhole
from tests.support.servers import free_port, serve
from tests.support.waiting import eventually

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
PROXIED = "/api/v1/reviews/items/1/summary"  # a hot route, anonymous, served by legacy by default
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
# A bound against hanging, never an assertion on speed.
HANG_GUARD = 10.0


@dataclass
class Gateway:
    url: str
    var: Path

    @property
    def overrides(self) -> Path:
        return self.var / "overrides.json"

    @property
    def audit(self) -> Path:
        return self.var / "audit.jsonl"

    def admin(
        self, method: str, action: str, headers: dict[str, str] | None = None, **kwargs
    ) -> httpx.Response:
        return httpx.request(
            method,
            f"{self.url}/_gateway/admin/{action}",
            headers={**ADMIN, **(headers or {})},
            timeout=HANG_GUARD,
            **kwargs,
        )


def _start_gateway(exits: ExitStack, stack: Stack, work: Path, env: dict[str, str]) -> Gateway:
    var = work / "var"
    var.mkdir(parents=True)
    port = free_port()
    full = {
        **os.environ,
        "GATEWAY_PORT": str(port),
        "GATEWAY_WORKERS": "1",
        "IDENTITY_SECRET": SECRET,
        "GATEWAY_ADMIN_TOKEN": ADMIN_TOKEN,
        "VAR_DIR": str(var),
        "REDIS_URL": "",
        "UNLEASH_URL": "",
        "LEGACY_URL": stack.legacy,
        "REVIEWS_URL": stack.reviews,
        "RECOMMENDATIONS_URL": stack.recommendations,
        **env,
    }
    ensure_flags_file(load_flags_settings(full))  # every route on legacy
    url = exits.enter_context(serve([sys.executable, "-m", "gateway"], full, port, work / "gateway.log"))
    return Gateway(url=url, var=var)


@pytest.fixture(scope="module")
def gateway(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """A gateway on the file store."""
    with ExitStack() as exits:
        yield _start_gateway(exits, stack, tmp_path_factory.mktemp("admin-file"), {})


@pytest.fixture
def clean(gateway: Gateway) -> Gateway:
    for path in (gateway.overrides, gateway.audit):
        path.unlink(missing_ok=True)
    assert eventually(lambda: gateway.admin("GET", "routes").json()["routes"][0]["override"] is None)
    return gateway


def _is_envelope(response: httpx.Response, status: int, code: str) -> bool:
    if response.status_code != status or not response.headers["content-type"].startswith("application/json"):
        return False
    error = response.json().get("error", {})
    return error.get("code") == code and isinstance(error.get("message"), str) and "request_id" in error


# --- A silent Redis must not block the event loop ---------------------------------------------------


def _proxy_loop(url: str, until: threading.Event | int) -> tuple[int, float, list[str]]:
    """GET a proxied route until ``until`` is set (or that many times): (done, seconds, failures)."""
    done, failures = 0, []
    started = time.monotonic()
    with httpx.Client(base_url=url, timeout=HANG_GUARD) as client:
        while (done < until) if isinstance(until, int) else not until.is_set():
            try:
                response = client.get(PROXIED)
                if response.status_code != 200:
                    failures.append(f"{response.status_code} {response.text[:200]}")
            except httpx.HTTPError as exc:
                failures.append(repr(exc))
            done += 1
    return done, time.monotonic() - started, failures


def test_a_silent_redis_gets_fast_503s_from_the_admin_api_and_never_stalls_the_proxy_path(
    stack: Stack, tmp_path: Path
):
    probe = redis.Redis.from_url(REDIS_URL)
    try:
        reachable = bool(probe.ping())
    except redis.RedisError:
        reachable = False
    finally:
        probe.close()
    require_service(reachable, f"Redis at {REDIS_URL}")
    host, port = REDIS_URL.removeprefix("redis://").split("/")[0].split(":")
    with ExitStack() as exits:
        hole = exits.enter_context(Blackhole((host, int(port))))
        gateway = _start_gateway(exits, stack, tmp_path, {"REDIS_URL": f"redis://127.0.0.1:{hole.port}/15"})
        # Redis reachable through the forwarder first: the admin API works.
        assert eventually(lambda: gateway.admin("GET", "audit").status_code == 200, timeout=10)
        hole.silence()  # now it accepts connections and never answers

        before = _proxy_loop(gateway.url, 300)

        # The console's polling, back to back (harsher than its 2 s period), from two threads.
        admin_answers: list[httpx.Response | Exception] = []

        def poll(action: str) -> None:
            for _ in range(4):
                try:
                    admin_answers.append(gateway.admin("GET", action))
                except httpx.HTTPError as exc:
                    admin_answers.append(exc)

        pollers = [threading.Thread(target=poll, args=(action,)) for action in ("routes", "audit")]
        admin_done = threading.Event()
        during: list[tuple[int, float, list[str]]] = []
        proxy = threading.Thread(target=lambda: during.append(_proxy_loop(gateway.url, admin_done)))
        proxy.start()
        for poller in pollers:
            poller.start()
        for poller in pollers:
            poller.join()
        write = gateway.admin(
            "POST", "overrides", json={"route": "reviews.list", "backend": "candidate", "reason": "r"}
        )
        admin_done.set()
        proxy.join()

        after = _proxy_loop(gateway.url, 300)

    assert len(admin_answers) == 8
    for answer in [*admin_answers, write]:
        assert isinstance(answer, httpx.Response), answer
        assert _is_envelope(answer, 503, "store_unavailable"), (answer.status_code, answer.text[:300])
    (done, seconds, failures) = during[0]
    assert failures == [], failures[:5]
    assert before[2] == [] and after[2] == []
    # Proxy throughput while the admin calls wait on Redis, against the same loop without them
    # (measured before and after, in this run): the admin calls must not take the event loop.
    quiet_rate = (before[0] + after[0]) / (before[1] + after[1])
    busy_rate = done / seconds
    assert done > 0 and busy_rate >= 0.5 * quiet_rate, (busy_rate, quiet_rate)


# --- Hostile values are refused before anything is written --------------------------------------

_VALID = {"route": "reviews.list", "backend": "candidate", "reason": "canary"}


def _raw(**fields: str) -> bytes:
    """A JSON body with raw values (NaN and Infinity are not JSON, but Python's parser takes them)."""
    parts = [f'"{name}": {json.dumps(value)}' for name, value in _VALID.items() if name not in fields]
    parts += [f'"{name}": {value}' for name, value in fields.items()]
    return ("{" + ", ".join(parts) + "}").encode()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (_raw(ttl_seconds="NaN"), "ttl_seconds"),
        (_raw(ttl_seconds="Infinity"), "ttl_seconds"),
        (_raw(ttl_seconds="-Infinity"), "ttl_seconds"),
        (_raw(ttl_seconds="1e400"), "ttl_seconds"),
        (_raw(ttl_seconds="31536000"), "ttl_seconds"),  # a year
        (_raw(ttl_seconds="true"), "ttl_seconds"),
        (_raw(percent="true"), "percent"),
        (_raw(percent="NaN"), "percent"),
        (_raw(percent="25.5"), "percent"),
        (_raw(reason=json.dumps("x" * 501)), "reason"),
        (_raw(reason='"   "'), "reason"),
        (_raw(reason='{"a": 1}'), "reason"),
        (_raw(actor=json.dumps("a" * 201)), "actor"),
        (_raw(actor="[1, 2]"), "actor"),
        (_raw(route='"no.such.route"'), "route"),
        (_raw(route="NaN"), "route"),
    ],
    ids=lambda value: value.decode()[-60:] if isinstance(value, bytes) else value,
)
def test_a_hostile_override_is_400_with_fields_and_nothing_is_written(
    clean: Gateway, body: bytes, field: str
):
    gateway = clean
    response = gateway.admin("POST", "overrides", content=body, headers={"content-type": "application/json"})
    assert _is_envelope(response, 400, "validation_error"), response.text[:300]
    assert field in response.json()["error"]["fields"]
    assert not gateway.overrides.exists() and not gateway.audit.exists()
    assert gateway.admin("GET", "routes").status_code == 200
    assert gateway.admin("GET", "audit").json() == {"entries": []}


def test_a_huge_body_is_413_and_nothing_is_written(clean: Gateway):
    gateway = clean
    response = gateway.admin("POST", "overrides", json={**_VALID, "reason": "x" * 5_000_000})
    assert _is_envelope(response, 413, "payload_too_large"), response.text[:300]
    assert not gateway.overrides.exists() and not gateway.audit.exists()


def test_a_valid_override_still_goes_through_with_a_ttl(clean: Gateway):
    gateway = clean
    response = gateway.admin("POST", "overrides", json={**_VALID, "percent": 25, "ttl_seconds": 3600})
    assert response.status_code == 200, response.text
    (change,) = response.json()["changes"]
    assert change["after"]["percent"] == 25
    assert change["after"]["expires_at"] - change["after"]["at"] == pytest.approx(3600)


def test_a_release_with_an_oversized_reason_is_400_and_the_override_stays(clean: Gateway):
    gateway = clean
    assert gateway.admin("POST", "overrides", json=_VALID).status_code == 200
    trail = gateway.audit.read_bytes()
    response = gateway.admin("DELETE", "overrides", params={"route": "reviews.list", "reason": "x" * 501})
    assert _is_envelope(response, 400, "validation_error"), response.text[:300]
    assert "reason" in response.json()["error"]["fields"]
    assert gateway.audit.read_bytes() == trail
    assert "reviews.list" in json.loads(gateway.overrides.read_text())["overrides"]


@pytest.mark.parametrize("limit", ["abc", "0", "-3", "1.5", "NaN"])
def test_a_bad_audit_limit_is_400(gateway: Gateway, limit: str):
    response = gateway.admin("GET", "audit", params={"limit": limit})
    assert _is_envelope(response, 400, "validation_error"), response.text[:300]
    assert "limit" in response.json()["error"]["fields"]


def test_bad_stored_lines_and_entries_are_skipped_not_fatal(clean: Gateway):
    gateway = clean
    assert gateway.admin("POST", "overrides", json=_VALID).status_code == 200
    good_trail = gateway.audit.read_text()
    document = json.loads(gateway.overrides.read_text())
    good = {**document["overrides"]["reviews.list"], "reason": "hand-edited"}
    document["overrides"]["reviews.list"] = good
    # What the NaN bug used to leave behind, and worse: written by hand, as an operator might.
    document["overrides"]["reviews.detail"] = {**good, "route": "reviews.detail", "expires_at": "NaN"}
    document["overrides"]["reviews.summary"] = {**good, "route": "reviews.summary", "reason": "x" * 600}
    document["overrides"]["reviews.mine"] = "not an override"
    text = json.dumps(document).replace('"NaN"', "NaN")
    gateway.overrides.write_text(text)
    entry = json.loads(good_trail.splitlines()[0])
    with gateway.audit.open("a") as audit:
        audit.write("{not json\n")
        audit.write(json.dumps({**entry, "at": "NaN"}).replace('"NaN"', "NaN") + "\n")
        audit.write(json.dumps({**entry, "reason": "r" * 600}) + "\n")
        audit.write(json.dumps({**entry, "after": {"backend": "sideways"}}) + "\n")
        audit.write("[1, 2, 3]\n")
        audit.write(json.dumps({**entry, "reason": "still readable"}) + "\n")

    def routes() -> dict[str, dict]:
        response = gateway.admin("GET", "routes")
        assert response.status_code == 200, response.text[:300]
        return {row["route"]: row for row in response.json()["routes"]}

    # The watcher has re-read the hand-edited file once the good entry's new reason shows.
    assert eventually(lambda: routes()["reviews.list"]["override"]["reason"] == "hand-edited")
    rows = routes()
    assert rows["reviews.detail"]["override"] is None
    assert rows["reviews.summary"]["override"] is None
    assert rows["reviews.mine"]["override"] is None
    audit = gateway.admin("GET", "audit")
    assert audit.status_code == 200, audit.text[:300]
    assert [e["reason"] for e in audit.json()["entries"]] == ["still readable", "canary"]

    # Writes go on, and the rewritten file keeps only well-formed overrides.
    released = gateway.admin("DELETE", "overrides", params={"route": "reviews.list", "reason": "calm again"})
    assert released.status_code == 200, released.text[:300]
    assert json.loads(gateway.overrides.read_text())["overrides"] == {}
    assert gateway.admin("GET", "audit").json()["entries"][0]["reason"] == "calm again"


# --- The envelope everywhere, and the console's headers ---------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "statuses"),
    [
        ("GET", "/_gateway/console/%00", {400, 404}),
        ("GET", "/_gateway/console/a%00b.js", {400, 404}),
        ("GET", "/_gateway/console/%ff%fe", {400, 404}),
        ("GET", "/_gateway/console/" + "a" * 5000, {414}),  # over GATEWAY_MAX_URL_BYTES (4000)
        ("GET", "/_gateway/console/%2e%2e/%2e%2e/pyproject.toml", {400, 404}),
        ("GET", "/_gateway/console/nope.js", {404}),
        ("POST", "/_gateway/console/", {405}),
        ("GET", "/_gateway/nope", {404}),
        ("PUT", "/_gateway/admin/routes", {405}),
    ],
)
def test_a_bad_gateway_path_is_a_json_envelope(gateway: Gateway, method: str, path: str, statuses: set):
    response = httpx.request(method, gateway.url + path, timeout=HANG_GUARD)
    assert response.status_code in statuses, (response.status_code, response.text[:300])
    error = response.json()["error"]
    assert set(error) >= {"code", "message", "request_id"}
    assert "Traceback" not in response.text


def test_an_exception_in_the_admin_app_is_a_500_envelope_without_a_trace():
    app = admin_app()
    # A runtime that knows the token and nothing else: any action that reads more raises.
    app.state.runtime = SimpleNamespace(settings=SimpleNamespace(admin_token=ADMIN_TOKEN))
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/_gateway/admin/shadow", headers={**ADMIN, "X-Request-ID": "req-1"})
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert (error["code"], error["request_id"]) == ("internal_error", "req-1")
    assert "Traceback" not in response.text and "AttributeError" not in response.text


@pytest.mark.parametrize(
    "path", ["/_gateway/console/", "/_gateway/console/console.js", "/_gateway/console/console.css"]
)
def test_the_console_is_served_with_a_strict_csp_and_no_framing(gateway: Gateway, path: str):
    response = httpx.get(gateway.url + path)
    assert response.status_code == 200
    policy = {
        directive.split()[0]: directive.split()[1:]
        for directive in response.headers["content-security-policy"].split(";")
        if directive.strip()
    }
    assert policy["default-src"] == ["'self'"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert "'unsafe-inline'" not in response.headers["content-security-policy"]
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"


def test_the_console_page_has_nothing_inline_for_the_csp_to_block():
    page = (Path(__file__).parents[2] / "gateway" / "console" / "index.html").read_text()
    assert re.findall(r"<script[^>]*>", page) == ['<script src="console.js">']
    assert not re.search(r"<style|\sstyle=|\son[a-z]+=|javascript:", page, re.IGNORECASE)


def test_admin_answers_are_not_cached_sniffed_or_framed(gateway: Gateway):
    for response in (gateway.admin("GET", "routes"), httpx.get(f"{gateway.url}/_gateway/admin/routes")):
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
