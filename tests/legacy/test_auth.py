"""Auth issuer (token, JWKS, rotation) and how the monolith recognises callers."""

import hashlib
import hmac
import json
import time

import jwt
import pytest
from django.conf import settings
from jwt import PyJWKSet

from legacy_django.common.signing_keys import DirectoryKeyStore, get_key_store
from legacy_django.items.models import Item
from legacy_django.reviews.models import Review
from tests.legacy.conftest import assert_error, assertion_headers, user_id

TOKEN_URL = "/api/v1/auth/token"


def _verify_with_jwks(api, token):
    jwks = PyJWKSet.from_dict(api.get("/.well-known/jwks.json").json())
    kid = jwt.get_unverified_header(token)["kid"]
    key = next(k for k in jwks.keys if k.key_id == kid)
    return jwt.decode(
        token, key.key, algorithms=["RS256"], audience=settings.JWT_AUDIENCE, issuer=settings.JWT_ISSUER
    )


def test_token_verifies_against_the_published_jwks(api):
    response = api.post(TOKEN_URL, {"username": "demo1", "password": "demo-password"})
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == settings.JWT_ACCESS_TTL_SECONDS
    assert response["Cache-Control"] == "no-store"
    claims = _verify_with_jwks(api, body["access_token"])
    assert claims["sub"] == str(user_id("demo1"))
    assert claims["scope"] == body["scope"] == "user"
    assert claims["exp"] - claims["iat"] == settings.JWT_ACCESS_TTL_SECONDS
    assert jwt.get_unverified_header(body["access_token"])["alg"] == "RS256"


def test_jwks_lists_public_rsa_keys_only(api):
    response = api.get("/.well-known/jwks.json")
    assert response.status_code == 200
    assert "max-age" in response["Cache-Control"]
    (key,) = response.json()["keys"]
    assert {key["kty"], key["alg"], key["use"]} == {"RSA", "RS256", "sig"}
    assert not {"d", "p", "q", "dp", "dq", "qi"} & set(key)


def test_form_encoded_credentials_are_accepted(api):
    response = api.post(
        TOKEN_URL, "username=demo2&password=demo-password", content_type="application/x-www-form-urlencoded"
    )
    assert response.status_code == 200
    assert response.json()["access_token"]


def test_wrong_password_and_unknown_user_get_the_same_401(api):
    wrong = api.post(TOKEN_URL, {"username": "demo1", "password": "nope"})
    unknown = api.post(TOKEN_URL, {"username": "no-such-user", "password": "demo-password"})
    for response in (wrong, unknown):
        assert_error(response, 401, "invalid_credentials")
        assert response["WWW-Authenticate"].startswith("Bearer")
    strip = lambda r: {k: v for k, v in r.json()["error"].items() if k != "request_id"}  # noqa: E731
    assert strip(wrong) == strip(unknown)


def test_inactive_user_cannot_get_a_token(api):
    from legacy_django.users.models import User

    User.objects.filter(username="demo5").update(is_active=False)
    assert_error(
        api.post(TOKEN_URL, {"username": "demo5", "password": "demo-password"}), 401, "invalid_credentials"
    )


@pytest.mark.parametrize(
    "body", [{}, {"username": "demo1"}, {"username": "", "password": "x"}, {"username": 5, "password": "x"}]
)
def test_token_request_with_missing_fields_is_a_validation_error(api, body):
    error = assert_error(api.post(TOKEN_URL, body), 400, "validation_error")
    assert set(error["fields"]) <= {"username", "password"} and error["fields"]


def test_token_endpoint_only_takes_post(api):
    response = api.get(TOKEN_URL)
    assert_error(response, 405, "method_not_allowed")
    assert response["Allow"] == "POST"


def test_rotation_publishes_both_keys_and_retiring_rejects_old_tokens(api, settings, tmp_path):
    settings.JWT_KEYS_DIR = tmp_path
    old_token = api.token("demo1")
    old_kid = jwt.get_unverified_header(old_token)["kid"]
    store = get_key_store()
    assert isinstance(store, DirectoryKeyStore)

    new_kid = store.rotate().kid
    assert {k["kid"] for k in api.get("/.well-known/jwks.json").json()["keys"]} == {old_kid, new_kid}
    fresh = api.post(TOKEN_URL, {"username": "demo1", "password": "demo-password"}).json()["access_token"]
    assert jwt.get_unverified_header(fresh)["kid"] == new_kid
    assert api.get("/api/v1/users/me", headers={"Authorization": f"Bearer {old_token}"}).status_code == 200

    store.retire(old_kid)
    assert [k["kid"] for k in api.get("/.well-known/jwks.json").json()["keys"]] == [new_kid]
    rejected = api.get("/api/v1/users/me", headers={"Authorization": f"Bearer {old_token}"})
    assert_error(rejected, 401, "unauthenticated")
    assert api.get("/api/v1/users/me", headers={"Authorization": f"Bearer {fresh}"}).status_code == 200


def test_active_key_cannot_be_retired(settings, tmp_path):
    from legacy_django.common.signing_keys import KeyStoreError

    settings.JWT_KEYS_DIR = tmp_path
    store = get_key_store()
    active = store.current().active.kid
    with pytest.raises(KeyStoreError):
        store.retire(active)  # type: ignore[union-attr]


def test_keys_from_the_environment(api, settings, tmp_path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    def pem(private: bool):
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        if private:
            return key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ).decode()
        return (
            key.public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
            .decode()
        )

    settings.JWT_PRIVATE_KEY = pem(private=True)
    settings.JWT_PREVIOUS_PUBLIC_KEYS = pem(private=False) + pem(private=False)
    assert len(api.get("/.well-known/jwks.json").json()["keys"]) == 3
    token = api.post(TOKEN_URL, {"username": "demo3", "password": "demo-password"}).json()["access_token"]
    assert _verify_with_jwks(api, token)["sub"] == str(user_id("demo3"))


def _forged(claims_override, key=None, kid=None):
    store = get_key_store().current()
    now = int(time.time())
    claims = {
        "sub": str(user_id("demo1")),
        "iat": now,
        "exp": now + 60,
        "iss": settings.JWT_ISSUER,
        "aud": settings.JWT_AUDIENCE,
        "scope": "user",
        **claims_override,
    }
    return jwt.encode(
        claims, key or store.active.private_key, algorithm="RS256", headers={"kid": kid or store.active.kid}
    )


@pytest.mark.parametrize(
    "override",
    [
        {"exp": int(time.time()) - 3600},
        {"iss": "someone-else"},
        {"aud": "other-api"},
        {"sub": "not-a-number"},
    ],
)
def test_bad_bearer_tokens_are_401_on_protected_endpoints(api, override):
    response = api.get("/api/v1/users/me", headers={"Authorization": f"Bearer {_forged(override)}"})
    error = assert_error(response, 401, "unauthenticated")
    assert error["message"] == "Invalid or expired credentials."


def test_token_signed_by_an_unpublished_key_is_rejected(api):
    from cryptography.hazmat.primitives.asymmetric import rsa

    rogue = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    for kid in (None, "unknown-kid"):
        token = _forged({}, key=rogue, kid=kid)
        assert_error(
            api.get("/api/v1/users/me", headers={"Authorization": f"Bearer {token}"}), 401, "unauthenticated"
        )


@pytest.mark.parametrize(
    "authorization", ["Bearer", "Basic ZGVtbzE6eA==", "Bearer not.a.jwt", "Bearer " + "a" * 5000]
)
def test_malformed_authorization_is_401_not_500(api, authorization):
    assert_error(
        api.get("/api/v1/users/me", headers={"Authorization": authorization}), 401, "unauthenticated"
    )


def test_bad_credentials_on_a_public_endpoint_mean_anonymous(api):
    response = api.get("/api/v1/reviews/items/1", headers={"Authorization": "Bearer broken"})
    assert response.status_code == 200
    assert all("helpful_by_me" not in review for review in response.json()["items"])


def test_missing_credentials_on_a_protected_endpoint(api):
    response = api.get("/api/v1/users/me")
    error = assert_error(response, 401, "unauthenticated")
    assert error["message"] == "Authentication required."
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'


def test_users_me_returns_the_signed_in_user(api):
    body = api.get("/api/v1/users/me", user="demo1").json()
    assert body == {
        "id": user_id("demo1"),
        "username": "demo1",
        "display_name": "김민준",
        "joined_at": body["joined_at"],
    }
    assert body["joined_at"].endswith("Z")


# --- the gateway's identity assertion -------------------------------------------------------------

ME = "/api/v1/users/me"


def test_valid_assertion_identifies_the_user(api):
    headers = assertion_headers("GET", ME, user=str(user_id("demo2")))
    assert api.get(ME, headers=headers).json()["username"] == "demo2"


def test_assertion_wins_over_a_bearer_token(api):
    headers = assertion_headers("GET", ME, user=str(user_id("demo2")))
    headers["Authorization"] = f"Bearer {api.token('demo1')}"
    assert api.get(ME, headers=headers).json()["username"] == "demo2"


@pytest.mark.parametrize(
    "tamper",
    [
        lambda h: h.update({"x-user-id": "1"}),
        lambda h: h.update({"x-identity-signature": "v2=" + "0" * 64}),
        lambda h: h.pop("x-identity-timestamp"),
    ],
)
def test_invalid_assertion_is_401_on_protected_endpoints(api, tamper):
    headers = assertion_headers("GET", ME, user=str(user_id("demo2")))
    tamper(headers)
    assert_error(api.get(ME, headers=headers), 401, "unauthenticated")


def test_expired_assertion_is_rejected(api):
    headers = assertion_headers("GET", ME, user=str(user_id("demo2")), timestamp=int(time.time()) - 120)
    assert_error(api.get(ME, headers=headers), 401, "unauthenticated")


def test_assertion_signed_for_another_path_is_rejected(api):
    headers = assertion_headers("GET", "/api/v1/reviews/me", user=str(user_id("demo2")))
    assert_error(api.get(ME, headers=headers), 401, "unauthenticated")


def test_anonymous_assertion_on_a_public_endpoint(api):
    path = "/api/v1/reviews/items/1"
    response = api.get(path, headers=assertion_headers("GET", path, user="", scopes=""))
    assert response.status_code == 200
    assert all("helpful_by_me" not in review for review in response.json()["items"])


def test_invalid_assertion_on_a_public_endpoint_is_anonymous(api):
    path = "/api/v1/reviews/items/1"
    headers = assertion_headers("GET", path, user=str(user_id("demo1")))
    headers["x-identity-signature"] = "v2=" + "f" * 64
    response = api.get(path, headers=headers)
    assert response.status_code == 200
    assert all("helpful_by_me" not in review for review in response.json()["items"])


def test_request_id_from_the_gateway_is_echoed(api):
    headers = assertion_headers("GET", ME, user=str(user_id("demo2")), request_id="gw-abc-123")
    headers["x-request-id"] = "gw-abc-123"
    assert api.get(ME, headers=headers)["X-Request-Id"] == "gw-abc-123"


# --- v2 binds the query and the body: a captured assertion replayed with others is refused ---------

MINE = "/api/v1/reviews/me"
PUBLIC = "/api/v1/reviews/items/1"


def _unreviewed_item(username: str) -> int:
    reviewed = Review.objects.filter(user_id=user_id(username)).values_list("item_id", flat=True)
    return Item.objects.exclude(id__in=reviewed).order_by("id").values_list("id", flat=True)[0]


def test_assertion_signed_with_the_query_identifies_the_user(api):
    headers = assertion_headers("GET", f"{MINE}?size=1", user=str(user_id("demo2")))
    response = api.get(f"{MINE}?size=1", headers=headers)
    assert response.status_code == 200, response.content
    assert response.json()["pagination"]["size"] == 1


@pytest.mark.parametrize(
    "replayed",
    [f"{MINE}?size=100", f"{MINE}?size=1&page=2", MINE, f"{MINE}?size=%31"],
    ids=["other-value", "extra-parameter", "no-query", "same-value-other-encoding"],
)
def test_assertion_replayed_with_another_query_is_401(api, replayed):
    headers = assertion_headers("GET", f"{MINE}?size=1", user=str(user_id("demo2")))
    assert_error(api.get(replayed, headers=headers), 401, "unauthenticated")


def test_assertion_replayed_with_another_query_on_a_public_endpoint_is_anonymous(api):
    headers = assertion_headers("GET", f"{PUBLIC}?size=3", user=str(user_id("demo1")))
    signed = api.get(f"{PUBLIC}?size=3", headers=headers).json()["items"]
    assert signed and all("helpful_by_me" in review for review in signed)
    replayed = api.get(f"{PUBLIC}?size=50", headers=headers)
    assert replayed.status_code == 200
    assert all("helpful_by_me" not in review for review in replayed.json()["items"])


def test_assertion_replayed_with_another_body_is_401_and_writes_nothing(api):
    item = _unreviewed_item("demo2")
    signed_body = json.dumps({"item_id": item, "rating": 5, "body": "signed"}).encode()
    headers = assertion_headers("POST", "/api/v1/reviews", user=str(user_id("demo2")), body=signed_body)
    replayed_body = json.dumps({"item_id": item, "rating": 1, "body": "replayed"}).encode()
    assert_error(api.post("/api/v1/reviews", replayed_body, headers=headers), 401, "unauthenticated")
    assert not Review.objects.filter(user_id=user_id("demo2"), item_id=item).exists()
    # The body the assertion was signed for still works, read by the view after the check.
    response = api.post("/api/v1/reviews", signed_body, headers=headers)
    assert response.status_code == 201, response.content
    assert (response.json()["rating"], response.json()["body"]) == (5, "signed")


def test_a_form_body_read_for_the_signature_is_still_parsed_by_the_view(api):
    form = b"username=demo2&password=demo-password"
    headers = assertion_headers("POST", TOKEN_URL, user="", scopes="", body=form)
    response = api.post(TOKEN_URL, form, content_type="application/x-www-form-urlencoded", headers=headers)
    assert response.status_code == 200, response.content
    assert response.json()["access_token"]


def test_a_signed_body_too_large_to_verify_is_a_413_envelope(api, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 64
    body = json.dumps({"item_id": 1, "rating": 5, "body": "x" * 100}).encode()
    headers = assertion_headers("POST", "/api/v1/reviews", user=str(user_id("demo2")), body=body)
    assert_error(api.post("/api/v1/reviews", body, headers=headers), 413, "payload_too_large")


def _v1_headers(path: str, user: str) -> dict[str, str]:
    """What a v1 gateway sent: the documented v1 string (method and path only)."""
    headers = assertion_headers("GET", path, user=user)
    ts = headers["x-identity-timestamp"]
    message = f"v1\n{ts}\nGET\n{path}\n{user}\nuser\n{headers['x-request-id']}"
    digest = hmac.new(settings.IDENTITY_SECRET.encode(), message.encode(), hashlib.sha256).hexdigest()
    return {**headers, "x-identity-signature": f"v1={digest}"}


def test_a_v1_assertion_is_refused_unless_identity_accept_v1(api, settings):
    headers = _v1_headers(ME, str(user_id("demo2")))
    assert_error(api.get(ME, headers=headers), 401, "unauthenticated")
    settings.IDENTITY_ACCEPT_V1 = True
    assert api.get(ME, headers=headers).json()["username"] == "demo2"
