import hashlib
import hmac

import pytest

from identity import (
    HEADER_SCOPES,
    HEADER_SIGNATURE,
    HEADER_TIMESTAMP,
    HEADER_USER_ID,
    IDENTITY_HEADERS,
    IdentityError,
    canonical_string,
    sign,
    verify,
)

SECRET = "test-secret"
NOW = 1_790_000_000
REQUEST = {"method": "GET", "path": "/api/v1/reviews/me"}


def _signed(user_id: str = "42", scopes: str = "user", **overrides: object) -> dict[str, str]:
    fields: dict = {**REQUEST, "user_id": user_id, "scopes": scopes, "request_id": "req-1", "timestamp": NOW}
    fields.update(overrides)
    return sign(SECRET, **fields)


def test_round_trip_returns_identity():
    identity = verify(SECRET, _signed(), **REQUEST, now=NOW)
    assert identity.user_id == "42"
    assert identity.scopes == ("user",)
    assert identity.request_id == "req-1"
    assert identity.timestamp == NOW
    assert identity.is_authenticated


def test_signature_is_hmac_sha256_of_the_v1_canonical_string():
    headers = _signed()
    message = "v1\n1790000000\nGET\n/api/v1/reviews/me\n42\nuser\nreq-1"
    assert (
        canonical_string(
            timestamp=NOW,
            method="GET",
            path="/api/v1/reviews/me",
            user_id="42",
            scopes="user",
            request_id="req-1",
        )
        == message
    )
    expected = hmac.new(SECRET.encode(), message.encode(), hashlib.sha256).hexdigest()
    assert headers[HEADER_SIGNATURE] == f"v1={expected}"


def test_anonymous_assertion_has_empty_user():
    identity = verify(SECRET, _signed(user_id="", scopes=""), **REQUEST, now=NOW)
    assert identity.user_id == ""
    assert identity.scopes == ()
    assert not identity.is_authenticated


def test_header_names_are_case_insensitive():
    headers = {name.title(): value for name, value in _signed().items()}
    assert verify(SECRET, headers, **REQUEST, now=NOW).user_id == "42"


@pytest.mark.parametrize(
    ("header", "value"),
    [
        (HEADER_USER_ID, "43"),
        (HEADER_SCOPES, "user admin"),
        ("x-request-id", "req-2"),
        (HEADER_TIMESTAMP, str(NOW + 1)),
    ],
)
def test_tampered_header_is_rejected(header, value):
    headers = _signed()
    headers[header] = value
    with pytest.raises(IdentityError) as excinfo:
        verify(SECRET, headers, **REQUEST, now=NOW)
    assert excinfo.value.reason == "bad_signature"


@pytest.mark.parametrize(
    "request_fields",
    [{"method": "DELETE", "path": "/api/v1/reviews/me"}, {"method": "GET", "path": "/api/v1/reviews/1"}],
)
def test_assertion_is_bound_to_method_and_path(request_fields):
    with pytest.raises(IdentityError) as excinfo:
        verify(SECRET, _signed(), **request_fields, now=NOW)
    assert excinfo.value.reason == "bad_signature"


def test_wrong_secret_is_rejected():
    with pytest.raises(IdentityError) as excinfo:
        verify("other-secret", _signed(), **REQUEST, now=NOW)
    assert excinfo.value.reason == "bad_signature"


def test_any_of_several_secrets_verifies_during_rotation():
    assert verify(["new-secret", SECRET], _signed(), **REQUEST, now=NOW).user_id == "42"


@pytest.mark.parametrize(("offset", "reason"), [(-31, "expired"), (31, "future")])
def test_timestamp_outside_skew_is_rejected(offset, reason):
    with pytest.raises(IdentityError) as excinfo:
        verify(SECRET, _signed(timestamp=NOW + offset), **REQUEST, now=NOW)
    assert excinfo.value.reason == reason


@pytest.mark.parametrize("offset", [-30, 30])
def test_timestamp_at_the_skew_edge_is_accepted(offset):
    assert verify(SECRET, _signed(timestamp=NOW + offset), **REQUEST, now=NOW).user_id == "42"


@pytest.mark.parametrize("missing", IDENTITY_HEADERS)
def test_missing_header_is_rejected(missing):
    headers = _signed()
    del headers[missing]
    with pytest.raises(IdentityError) as excinfo:
        verify(SECRET, headers, **REQUEST, now=NOW)
    assert excinfo.value.reason == "missing"


@pytest.mark.parametrize(
    ("header", "value"),
    [
        (HEADER_SIGNATURE, "v2=" + "0" * 64),
        (HEADER_SIGNATURE, "v1=XYZ"),
        (HEADER_TIMESTAMP, "12.5"),
        (HEADER_TIMESTAMP, "-5"),
        (HEADER_USER_ID, "%ff%fe"),
    ],
)
def test_malformed_header_is_rejected(header, value):
    headers = _signed()
    headers[header] = value
    with pytest.raises(IdentityError) as excinfo:
        verify(SECRET, headers, **REQUEST, now=NOW)
    assert excinfo.value.reason == "malformed"


@pytest.mark.parametrize("user_id", ["김민준", "ユーザー", "émile@example.com", "a b/c%d"])
def test_non_ascii_user_ids_round_trip_as_ascii_headers(user_id):
    headers = _signed(user_id=user_id)
    assert headers[HEADER_USER_ID].isascii()
    assert verify(SECRET, headers, **REQUEST, now=NOW).user_id == user_id


def test_non_ascii_user_id_signature_covers_utf8_bytes():
    headers = _signed(user_id="김민준")
    headers[HEADER_USER_ID] = "%EA%B9%80"  # a different (valid) Korean user id
    with pytest.raises(IdentityError) as excinfo:
        verify(SECRET, headers, **REQUEST, now=NOW)
    assert excinfo.value.reason == "bad_signature"


@pytest.mark.parametrize(
    "overrides",
    [
        {"user_id": "a\nb"},
        {"scopes": "user\nadmin"},
        {"request_id": ""},
        {"method": "get"},
        {"path": "/x?y=1"},
    ],
)
def test_sign_refuses_fields_that_could_forge_the_canonical_string(overrides):
    with pytest.raises(IdentityError) as excinfo:
        _signed(**overrides)
    assert excinfo.value.reason == "malformed"


def test_command_line_prints_verifiable_headers(capsys, monkeypatch):
    from identity.__main__ import main

    monkeypatch.setenv("IDENTITY_SECRET", SECRET)
    assert main(["get", "/api/v1/reviews/me", "--user", "7", "--request-id", "cli-1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    headers = dict(line.split(": ", 1) for line in lines)
    identity = verify(SECRET, headers, method="GET", path="/api/v1/reviews/me")
    assert (identity.user_id, identity.scopes, identity.request_id) == ("7", ("user",), "cli-1")


def test_command_line_refuses_unsignable_input(capsys):
    from identity.__main__ import main

    assert main(["GET", "/x?y=1"]) == 2
    assert "cannot sign" in capsys.readouterr().err
