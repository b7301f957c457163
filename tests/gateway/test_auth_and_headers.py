"""Authenticate once: every bad token is a 401 envelope that never reaches a backend, and a backend
never sees identity or forwarding headers a client made up."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

import identity
from tests.gateway.conftest import SECRET, Stack
from tests.support.waiting import eventually

ISSUER, AUDIENCE = "shop-legacy", "shop-api"


def _signing_key(stack: Stack) -> tuple[str, object]:
    keys = stack.work / "keys"
    kid = (keys / "active").read_text().strip()
    return kid, serialization.load_pem_private_key((keys / f"{kid}.pem").read_bytes(), password=None)


def _token(stack: Stack, **overrides: object) -> str:
    kid, key = _signing_key(stack)
    now = int(time.time())
    claims = {"sub": "1", "iat": now, "exp": now + 300, "iss": ISSUER, "aud": AUDIENCE, "scope": "user"}
    headers = {"kid": overrides.pop("kid", kid)}
    claims.update(overrides)
    return jwt.encode(claims, key, algorithm="RS256", headers=headers)


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _hs256_with(secret: bytes, kid: str, payload: str) -> str:
    """The classic confusion attack: an HMAC "signed" with the RSA public key."""
    signing_input = f"{_b64({'alg': 'HS256', 'typ': 'JWT', 'kid': kid})}.{payload}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"


def _bad_tokens(stack: Stack) -> dict[str, str]:
    kid, key = _signing_key(stack)
    now = int(time.time())
    good = _token(stack)
    head, payload, signature = good.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    public_pem = key.public_key().public_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    rogue = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return {
        "expired": _token(stack, iat=now - 7200, exp=now - 3600),
        "not yet valid": _token(stack, iat=now + 3600, nbf=now + 3600, exp=now + 7200),
        "wrong iss": _token(stack, iss="someone-else"),
        "wrong aud": _token(stack, aud="another-api"),
        "alg none": f"{_b64({'alg': 'none', 'typ': 'JWT', 'kid': kid})}.{payload}.",
        "HS256 with the public key": _hs256_with(public_pem, kid, payload),
        "unknown kid": _token(stack, kid="no-such-key"),
        "kid with path characters": _token(stack, kid="../../etc/passwd"),
        "signed by another key": jwt.encode({**claims}, rogue, algorithm="RS256", headers={"kid": kid}),
        "tampered payload": f"{head}.{_b64({**claims, 'sub': '2'})}.{signature}",
        "truncated": good[: len(good) // 2],
        "7 KB": "a" * 7000,  # larger headers are a 431 before auth (test_http_limits.py)
        "garbage": "not-a-token",
    }


def test_a_valid_token_gets_through_once_verified(clean_recorder: Stack):
    stack = clean_recorder
    response = httpx.get(
        f"{stack.recording_gateway}/api/v1/users/me", headers={"Authorization": f"Bearer {_token(stack)}"}
    )
    assert response.status_code == 200
    (request,) = stack.recorded()
    headers = dict(request["headers"])
    assert headers["x-user-id"] == "1"
    assert "authorization" not in headers, "the assertion replaces the token"


@pytest.mark.parametrize(
    "case",
    [
        "expired",
        "not yet valid",
        "wrong iss",
        "wrong aud",
        "alg none",
        "HS256 with the public key",
        "unknown kid",
        "kid with path characters",
        "signed by another key",
        "tampered payload",
        "truncated",
        "7 KB",
        "garbage",
    ],
)
def test_every_bad_token_is_a_401_that_reaches_no_backend(clean_recorder: Stack, case: str):
    stack = clean_recorder
    token = _bad_tokens(stack)[case]
    for path in ("/api/v1/users/me", "/api/v1/reviews/items/1", "/api/v1/reviews/me"):
        response = httpx.get(f"{stack.recording_gateway}{path}", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401, (case, path, response.text)
        error = response.json()["error"]
        assert error["code"] == "unauthenticated" and error["request_id"] == response.headers["x-request-id"]
    assert stack.recorded() == []


@pytest.mark.parametrize("authorization", ["Token abc", "Bearer", "bearer", "Basic ZGVtbzE6eA=="])
def test_a_malformed_authorization_header_is_a_401(clean_recorder: Stack, authorization: str):
    stack = clean_recorder
    response = httpx.get(
        f"{stack.recording_gateway}/api/v1/reviews/items/1", headers={"Authorization": authorization}
    )
    assert response.status_code == 401
    assert stack.recorded() == []


def test_required_routes_need_a_token(clean_recorder: Stack):
    stack = clean_recorder
    response = httpx.get(f"{stack.recording_gateway}/api/v1/recommendations/home")
    assert response.status_code == 401
    assert response.json()["error"]["message"] == "Authentication required."
    assert stack.recorded() == []


SPOOFED = {
    "X-User-Id": "999",
    "X-User-Scopes": "admin",
    "X-Identity-Signature": "v1=" + "0" * 64,
    "X-Identity-Timestamp": "1",
    "X-Forwarded-For": "6.6.6.6",
    "X-Forwarded-Host": "evil.example",
    "X-Request-Deadline": "99999999999999",
    "Connection": "keep-alive, X-Secret",
}


@pytest.mark.parametrize("signed_in", [False, True])
def test_spoofed_identity_and_forwarding_headers_never_reach_the_backend(
    clean_recorder: Stack, signed_in: bool
):
    stack = clean_recorder
    headers = dict(SPOOFED)
    if signed_in:
        headers["Authorization"] = f"Bearer {_token(stack)}"
    response = httpx.get(f"{stack.recording_gateway}/api/v1/items/1?x=1", headers=headers)
    assert response.status_code == 200
    (request,) = stack.recorded()
    received = {}
    for name, value in request["headers"]:
        assert name not in received, f"{name} sent twice"
        received[name] = value
    assert received["x-user-id"] == ("1" if signed_in else "")
    assert received["x-user-scopes"] == ("user" if signed_in else "")
    assert received["x-forwarded-for"] == "127.0.0.1"
    assert "x-forwarded-host" not in received
    verified = identity.verify(
        SECRET, received, method="GET", path="/api/v1/items/1", query=request["query"], body=b""
    )
    assert verified.user_id == ("1" if signed_in else "")
    assert request["query"] == "x=1"


def test_the_assertion_binds_the_query_and_body_the_backend_receives(clean_recorder: Stack):
    stack = clean_recorder
    body = '{"item_id": 2, "rating": 5, "body": "배송이 빨라요"}'.encode()
    response = httpx.post(
        f"{stack.recording_gateway}/api/v1/reviews?source=app%20v2&x=1",
        content=body,
        headers={"Authorization": f"Bearer {_token(stack)}", "Content-Type": "application/json"},
    )
    assert response.status_code == 200
    (request,) = stack.recorded()
    received = dict(request["headers"])
    assert received["x-identity-signature"].startswith("v2=")
    sent = {"method": "POST", "path": request["path"], "query": request["query"]}
    assert request["query"] == "source=app%20v2&x=1"
    received_body = request["body"].encode()
    assert received_body == body
    assert identity.verify(SECRET, received, **sent, body=received_body).user_id == "1"
    for other in ({**sent, "body": body + b" "}, {**sent, "query": "source=app%20v2", "body": body}):
        with pytest.raises(identity.IdentityError):
            identity.verify(SECRET, received, **other)


def test_the_gateway_signs_a_deadline_a_client_cannot_extend(clean_recorder: Stack):
    stack = clean_recorder
    before = time.time()
    response = httpx.get(
        f"{stack.recording_gateway}/api/v1/items/1", headers={"X-Request-Deadline": "99999999999999"}
    )
    after = time.time()
    assert response.status_code == 200
    (request,) = stack.recorded()
    deadlines = [value for name, value in request["headers"] if name == "x-request-deadline"]
    assert len(deadlines) == 1, "the client's deadline must be replaced, not sent alongside"
    # The legacy cluster's connect_timeout (1 s) plus read_timeout (15 s): when the gateway stops waiting.
    assert int((before + 16) * 1000) <= int(deadlines[0]) <= int((after + 16) * 1000)
    received = dict(request["headers"])
    verified = identity.verify(SECRET, received, method="GET", path="/api/v1/items/1", query="", body=b"")
    assert verified.deadline == int(deadlines[0])


def test_bulkhead_refuses_at_once_instead_of_queueing(clean_recorder: Stack):
    stack = clean_recorder
    slow = threading.Thread(target=lambda: httpx.get(f"{stack.recording_gateway}/slow", timeout=10))
    slow.start()
    try:
        # Once the recorder has the slow request, it holds the cluster's only slot (for 1 s).
        assert eventually(
            lambda: stack.recorder_log.exists() and '"path": "/slow"' in stack.recorder_log.read_text()
        )
        response = httpx.get(f"{stack.recording_gateway}/api/v1/items/1", timeout=10)
        assert slow.is_alive(), "answered while the slow request still holds the slot: not queued behind it"
        assert response.status_code == 503
        assert response.headers["retry-after"] == "1"
        assert response.json()["error"]["code"] == "overloaded"
    finally:
        slow.join()
    assert httpx.get(f"{stack.recording_gateway}/api/v1/items/1").status_code == 200
