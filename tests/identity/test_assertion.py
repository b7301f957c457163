import hashlib
import hmac
import io

import pytest

from identity import (
    HEADER_DEADLINE,
    HEADER_SCOPES,
    HEADER_SIGNATURE,
    HEADER_TIMESTAMP,
    HEADER_USER_ID,
    IDENTITY_HEADERS,
    IdentityError,
    body_sha256,
    canonical_string,
    deadline_passed,
    parse_deadline,
    sign,
    verify,
)

SECRET = "test-secret"
NOW = 1_790_000_000
BODY = b'{"item_id": 2, "rating": 5, "body": "\xeb\xb0\xb0\xec\x86\xa1"}'
REQUEST = {"method": "POST", "path": "/api/v1/reviews", "query": "size=3&sort=rating", "body": BODY}
EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def _signed(user_id: str = "42", scopes: str = "user", **overrides: object) -> dict[str, str]:
    fields: dict = {**REQUEST, "user_id": user_id, "scopes": scopes, "request_id": "req-1", "timestamp": NOW}
    fields.update(overrides)
    return sign(SECRET, **fields)


def _v1_signed(secret: str = SECRET, timestamp: int = NOW) -> dict[str, str]:
    """What a v1 gateway sent: the documented v1 string, which has no query and no body."""
    message = f"v1\n{timestamp}\nPOST\n/api/v1/reviews\n42\nuser\nreq-1"
    digest = hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()
    headers = _signed(timestamp=timestamp)
    headers[HEADER_SIGNATURE] = f"v1={digest}"
    return headers


def test_round_trip_returns_identity():
    identity = verify(SECRET, _signed(), **REQUEST, now=NOW)
    assert identity.user_id == "42"
    assert identity.scopes == ("user",)
    assert identity.request_id == "req-1"
    assert identity.timestamp == NOW
    assert identity.is_authenticated


def test_signature_is_hmac_sha256_of_the_v2_canonical_string():
    headers = _signed()
    digest = hashlib.sha256(BODY).hexdigest()
    # The tenth field, the deadline, is empty: this request has none.
    message = f"v2\n1790000000\nPOST\n/api/v1/reviews\nsize=3&sort=rating\n{digest}\n42\nuser\nreq-1\n"
    assert (
        canonical_string(
            timestamp=NOW,
            method="POST",
            path="/api/v1/reviews",
            query="size=3&sort=rating",
            body_sha256=body_sha256(BODY),
            user_id="42",
            scopes="user",
            request_id="req-1",
            deadline="",
        )
        == message
    )
    expected = hmac.new(SECRET.encode(), message.encode(), hashlib.sha256).hexdigest()
    assert headers[HEADER_SIGNATURE] == f"v2={expected}"


def test_no_body_is_signed_as_the_digest_of_empty_bytes():
    assert body_sha256(b"") == EMPTY_SHA256
    headers = _signed(method="GET", query="", body=b"")
    message = f"v2\n{NOW}\nGET\n/api/v1/reviews\n\n{EMPTY_SHA256}\n42\nuser\nreq-1\n"
    expected = hmac.new(SECRET.encode(), message.encode(), hashlib.sha256).hexdigest()
    assert headers[HEADER_SIGNATURE] == f"v2={expected}"


def test_query_and_body_must_be_given_explicitly():
    with pytest.raises(TypeError):
        sign(SECRET, method="GET", path="/x", user_id="", scopes="", request_id="r")  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        verify(SECRET, _signed(), method="GET", path="/x", now=NOW)  # type: ignore[call-arg]


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
    "changed",
    [
        {"method": "DELETE"},
        {"path": "/api/v1/reviews/1"},
        {"query": "size=100&sort=rating"},
        {"query": "sort=rating&size=3"},  # same parameters, another order: another request line
        {"query": "size=%33&sort=rating"},  # same decoded value, other encoding: raw text is signed
        {"query": ""},
        {"query": "size=3&sort=rating&"},
        {"body": b'{"item_id": 2, "rating": 1, "body": "x"}'},
        {"body": BODY + b"\n"},
        {"body": b""},
    ],
    ids=lambda changed: "-".join(f"{k}={v!r}" for k, v in changed.items()),
)
def test_a_replay_with_another_method_path_query_or_body_is_rejected(changed):
    with pytest.raises(IdentityError) as excinfo:
        verify(SECRET, _signed(), **{**REQUEST, **changed}, now=NOW)
    assert excinfo.value.reason == "bad_signature"


def test_an_empty_body_verifies_when_none_was_signed():
    request = {**REQUEST, "method": "GET", "query": "", "body": b""}
    assert verify(SECRET, _signed(**request), **request, now=NOW).user_id == "42"


def test_wrong_secret_is_rejected():
    with pytest.raises(IdentityError) as excinfo:
        verify("other-secret", _signed(), **REQUEST, now=NOW)
    assert excinfo.value.reason == "bad_signature"


@pytest.mark.parametrize(
    "secrets", [["new-secret", SECRET], [SECRET, "new-secret"], (b"new", SECRET.encode())]
)
def test_any_of_several_secrets_verifies_during_rotation(secrets):
    assert verify(secrets, _signed(), **REQUEST, now=NOW).user_id == "42"


def test_rotation_still_binds_the_body():
    with pytest.raises(IdentityError) as excinfo:
        verify(["new-secret", SECRET], _signed(), **{**REQUEST, "body": b"{}"}, now=NOW)
    assert excinfo.value.reason == "bad_signature"


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
        (HEADER_SIGNATURE, "v3=" + "0" * 64),
        (HEADER_SIGNATURE, "v2=XYZ"),
        (HEADER_SIGNATURE, "v2=" + "A" * 64),
        (HEADER_SIGNATURE, "v2=" + "0" * 63),
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


# --- the deadline (X-Request-Deadline) is the tenth field: nobody can add, drop or move it -------

DEADLINE = NOW * 1000 + 15_500


def test_a_signed_deadline_is_the_tenth_field_and_round_trips():
    headers = _signed(deadline=DEADLINE)
    assert headers[HEADER_DEADLINE] == str(DEADLINE)
    digest = hashlib.sha256(BODY).hexdigest()
    message = f"v2\n{NOW}\nPOST\n/api/v1/reviews\nsize=3&sort=rating\n{digest}\n42\nuser\nreq-1\n{DEADLINE}"
    expected = hmac.new(SECRET.encode(), message.encode(), hashlib.sha256).hexdigest()
    assert headers[HEADER_SIGNATURE] == f"v2={expected}"
    assert verify(SECRET, headers, **REQUEST, now=NOW).deadline == DEADLINE


def test_no_deadline_sends_no_header_and_verifies_as_none():
    headers = _signed()
    assert HEADER_DEADLINE not in headers
    assert verify(SECRET, headers, **REQUEST, now=NOW).deadline is None
    # An empty header is the same as none (the field is empty either way).
    assert verify(SECRET, {**headers, HEADER_DEADLINE: ""}, **REQUEST, now=NOW).deadline is None


@pytest.mark.parametrize(
    "tamper",
    [
        lambda h: h.update({HEADER_DEADLINE: str(DEADLINE + 60_000)}),  # extended
        lambda h: h.update({HEADER_DEADLINE: str(DEADLINE - 1)}),  # moved earlier
        lambda h: h.pop(HEADER_DEADLINE),  # dropped
    ],
    ids=["extended", "earlier", "dropped"],
)
def test_a_changed_or_dropped_deadline_breaks_the_signature(tamper):
    headers = _signed(deadline=DEADLINE)
    tamper(headers)
    with pytest.raises(IdentityError) as excinfo:
        verify(SECRET, headers, **REQUEST, now=NOW)
    assert excinfo.value.reason == "bad_signature"


def test_a_deadline_added_to_an_assertion_signed_without_one_breaks_the_signature():
    headers = {**_signed(), HEADER_DEADLINE: str(DEADLINE)}
    with pytest.raises(IdentityError) as excinfo:
        verify(SECRET, headers, **REQUEST, now=NOW)
    assert excinfo.value.reason == "bad_signature"


@pytest.mark.parametrize("value", ["-1", "1.5", "12e3", " 1", "1" * 16, "soon"])
def test_a_malformed_deadline_is_refused(value):
    with pytest.raises(IdentityError) as excinfo:
        verify(SECRET, {**_signed(), HEADER_DEADLINE: value}, **REQUEST, now=NOW)
    assert excinfo.value.reason == "malformed"


@pytest.mark.parametrize("deadline", [-1, 10**15])
def test_sign_refuses_a_deadline_that_is_not_unix_milliseconds(deadline):
    with pytest.raises(IdentityError) as excinfo:
        _signed(deadline=deadline)
    assert excinfo.value.reason == "malformed"


def test_deadline_passed_at_and_after_the_deadline_only():
    assert not deadline_passed(str(DEADLINE), now=(DEADLINE - 1) / 1000)
    assert deadline_passed(str(DEADLINE), now=DEADLINE / 1000)
    assert deadline_passed(str(DEADLINE), now=(DEADLINE + 1) / 1000)
    for nothing in (None, "", "soon", "-5"):
        assert parse_deadline(nothing) is None
        assert not deadline_passed(nothing, now=DEADLINE / 1000)


# --- v1 (method and path only): refused unless a backend opts in for an upgrade window ------------


def test_a_valid_v1_assertion_is_refused_by_default():
    with pytest.raises(IdentityError) as excinfo:
        verify(SECRET, _v1_signed(), **REQUEST, now=NOW)
    assert excinfo.value.reason == "unsupported_version"


def test_a_v1_assertion_verifies_when_v1_is_accepted():
    identity = verify(SECRET, _v1_signed(), **REQUEST, now=NOW, accept_v1=True)
    assert (identity.user_id, identity.scopes) == ("42", ("user",))


def test_the_v1_window_still_checks_secret_rotation_skew_path_and_method():
    assert verify(["new", SECRET], _v1_signed(), **REQUEST, now=NOW, accept_v1=True).user_id == "42"
    cases = [
        (_v1_signed(secret="other"), REQUEST, "bad_signature"),
        (_v1_signed(timestamp=NOW - 31), REQUEST, "expired"),
        (_v1_signed(), {**REQUEST, "path": "/api/v1/reviews/me"}, "bad_signature"),
        (_v1_signed(), {**REQUEST, "method": "PUT"}, "bad_signature"),
    ]
    for headers, request, reason in cases:
        with pytest.raises(IdentityError) as excinfo:
            verify(SECRET, headers, **request, now=NOW, accept_v1=True)
        assert excinfo.value.reason == reason


def test_accepting_v1_does_not_weaken_v2():
    with pytest.raises(IdentityError) as excinfo:
        verify(SECRET, _signed(), **{**REQUEST, "query": "size=100"}, now=NOW, accept_v1=True)
    assert excinfo.value.reason == "bad_signature"


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
        {"query": "a=1\nb=2"},
        {"query": "a=\x00"},
    ],
)
def test_sign_refuses_fields_that_could_forge_the_canonical_string(overrides):
    with pytest.raises(IdentityError) as excinfo:
        _signed(**overrides)
    assert excinfo.value.reason == "malformed"


def test_verify_refuses_a_received_query_with_a_control_character():
    with pytest.raises(IdentityError) as excinfo:
        verify(SECRET, _signed(), **{**REQUEST, "query": "size=3\n"}, now=NOW)
    assert excinfo.value.reason == "malformed"


# --- python -m identity ---------------------------------------------------------------------------


def _cli_headers(capsys: pytest.CaptureFixture[str], argv: list[str]) -> dict[str, str]:
    from identity.__main__ import main

    assert main(argv) == 0
    return dict(line.split(": ", 1) for line in capsys.readouterr().out.splitlines())


def test_command_line_prints_verifiable_headers(capsys, monkeypatch):
    monkeypatch.setenv("IDENTITY_SECRET", SECRET)
    headers = _cli_headers(capsys, ["get", "/api/v1/reviews/me", "--user", "7", "--request-id", "cli-1"])
    identity = verify(SECRET, headers, method="GET", path="/api/v1/reviews/me", query="", body=b"")
    assert (identity.user_id, identity.scopes, identity.request_id) == ("7", ("user",), "cli-1")


def test_command_line_signs_the_query_of_the_target(capsys, monkeypatch):
    monkeypatch.setenv("IDENTITY_SECRET", SECRET)
    headers = _cli_headers(capsys, ["GET", "/api/v1/reviews/items/1?size=3&sort=rating", "--user", "7"])
    request = {"method": "GET", "path": "/api/v1/reviews/items/1", "body": b""}
    assert verify(SECRET, headers, **request, query="size=3&sort=rating").user_id == "7"
    with pytest.raises(IdentityError):
        verify(SECRET, headers, **request, query="size=50&sort=rating")


@pytest.mark.parametrize("how", ["text", "file", "stdin"])
def test_command_line_signs_the_exact_body(capsys, monkeypatch, tmp_path, how):
    monkeypatch.setenv("IDENTITY_SECRET", SECRET)
    data = {"text": BODY.decode(), "file": f"@{tmp_path / 'body.json'}", "stdin": "@-"}[how]
    (tmp_path / "body.json").write_bytes(BODY)
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(BODY)))
    headers = _cli_headers(capsys, ["POST", "/api/v1/reviews", "--user", "7", "--data-binary", data])
    request = {"method": "POST", "path": "/api/v1/reviews", "query": ""}
    assert verify(SECRET, headers, **request, body=BODY).user_id == "7"
    with pytest.raises(IdentityError):
        verify(SECRET, headers, **request, body=b"{}")


def test_command_line_signs_a_deadline(capsys, monkeypatch):
    monkeypatch.setenv("IDENTITY_SECRET", SECRET)
    headers = _cli_headers(capsys, ["GET", "/x", "--deadline", str(DEADLINE)])
    assert headers[HEADER_DEADLINE] == str(DEADLINE)
    assert verify(SECRET, headers, method="GET", path="/x", query="", body=b"").deadline == DEADLINE


def test_command_line_refuses_unsignable_input(capsys, tmp_path):
    from identity.__main__ import main

    assert main(["GET", "/x?y=\x01"]) == 2
    assert "cannot sign" in capsys.readouterr().err
    assert main(["POST", "/x", "--data-binary", f"@{tmp_path / 'missing.json'}"]) == 2
    assert "cannot read the body" in capsys.readouterr().err
