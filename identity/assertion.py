"""Sign and verify the identity assertion (v2: HMAC-SHA256 over method, path, query, body, deadline)."""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import quote, unquote

HEADER_USER_ID = "x-user-id"
HEADER_SCOPES = "x-user-scopes"
HEADER_REQUEST_ID = "x-request-id"
HEADER_TIMESTAMP = "x-identity-timestamp"
HEADER_SIGNATURE = "x-identity-signature"
# Optional: absent means no deadline (signed as an empty field), so it is not in IDENTITY_HEADERS.
HEADER_DEADLINE = "x-request-deadline"
IDENTITY_HEADERS = (HEADER_USER_ID, HEADER_SCOPES, HEADER_REQUEST_ID, HEADER_TIMESTAMP, HEADER_SIGNATURE)

DEFAULT_SKEW_SECONDS = 30
VERSION = "v2"
_SIGNATURE_RE = re.compile(r"(v1|v2)=([0-9a-f]{64})")
_TIMESTAMP_RE = re.compile(r"[0-9]{1,12}")
_DEADLINE_RE = re.compile(r"[0-9]{1,15}")  # Unix milliseconds: 13 digits until the year 2286
_METHOD_RE = re.compile(r"[A-Z]{1,16}")
# Fields are joined with "\n"; a control character inside one could make two
# different assertions share a canonical string, so none are allowed.
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
_SCOPES_RE = re.compile(r"[\x21-\x7e]+(?: [\x21-\x7e]+)*|")
_REQUEST_ID_RE = re.compile(r"[\x21-\x7e]{1,200}")

Secret = str | bytes


class IdentityError(Exception):
    """The assertion is missing or invalid; ``reason`` says which way."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass(frozen=True, kw_only=True, slots=True)
class Identity:
    """Who the gateway says the caller is. ``user_id`` is empty for anonymous."""

    user_id: str
    scopes: tuple[str, ...]
    request_id: str
    timestamp: int
    # Unix milliseconds after which the gateway no longer waits for the answer; None: no deadline.
    deadline: int | None = None

    @property
    def is_authenticated(self) -> bool:
        return self.user_id != ""


_EMPTY_BODY_SHA256 = hashlib.sha256(b"").hexdigest()


def body_sha256(body: bytes) -> str:
    """Lower-case hex SHA-256 of the exact body bytes (of ``b""`` when there is no body)."""
    return hashlib.sha256(body).hexdigest() if body else _EMPTY_BODY_SHA256


def canonical_string(
    *,
    timestamp: int,
    method: str,
    path: str,
    query: str,
    body_sha256: str,
    user_id: str,
    scopes: str,
    request_id: str,
    deadline: str,
) -> str:
    """The exact string the v2 signature covers (``docs/identity.md``); ``deadline`` is ``""`` for none."""
    return (
        f"{VERSION}\n{timestamp}\n{method}\n{path}\n{query}\n{body_sha256}\n{user_id}\n{scopes}\n"
        f"{request_id}\n{deadline}"
    )


def _canonical_v1(
    *, timestamp: int, method: str, path: str, user_id: str, scopes: str, request_id: str
) -> str:
    # Only for verify(accept_v1=True) during an upgrade: it binds neither the query nor the body.
    return f"v1\n{timestamp}\n{method}\n{path}\n{user_id}\n{scopes}\n{request_id}"


@functools.lru_cache(maxsize=16)
def _key(secret: str) -> bytes:
    return secret.encode()


def _digest(secret: Secret, message: str) -> str:
    key = _key(secret) if isinstance(secret, str) else secret
    return hmac.digest(key, message.encode("utf-8"), "sha256").hex()  # one-shot: no HMAC object


@functools.lru_cache(maxsize=64)
def _method_problem(method: str) -> str | None:
    return None if _METHOD_RE.fullmatch(method) else "method must be upper-case letters"


@functools.lru_cache(maxsize=4096)
def _principal_problem(user_id: str, scopes: str) -> str | None:
    """Checked once per user and scopes (the gateway signs the same few again and again)."""
    if _CONTROL_RE.search(user_id):
        return "user id contains a control character"
    if not _SCOPES_RE.fullmatch(scopes):
        return "scopes must be space-separated printable ASCII"
    return None


def _check_fields(*, method: str, path: str, query: str, user_id: str, scopes: str, request_id: str) -> None:
    problem = _method_problem(method)
    if problem is not None:
        raise IdentityError("malformed", problem)
    if not path.startswith("/") or _CONTROL_RE.search(path) or "?" in path:
        raise IdentityError("malformed", "path must be a raw path without query string")
    if query and _CONTROL_RE.search(query):
        raise IdentityError("malformed", "query string contains a control character")
    problem = _principal_problem(user_id, scopes)
    if problem is not None:
        raise IdentityError("malformed", problem)
    if not _REQUEST_ID_RE.fullmatch(request_id):
        raise IdentityError("malformed", "request id must be 1-200 printable ASCII characters")


_B_USER_ID, _B_SCOPES, _B_REQUEST_ID, _B_TIMESTAMP, _B_SIGNATURE, _B_DEADLINE = (
    name.encode() for name in (*IDENTITY_HEADERS, HEADER_DEADLINE)
)


def sign_headers(
    secret: Secret,
    *,
    method: str,
    path: str,
    query: str,
    body: bytes,
    user_id: str,
    scopes: str,
    request_id: str,
    timestamp: int | None = None,
    deadline: int | None = None,
) -> list[tuple[bytes, bytes]]:
    """``sign`` as the header pairs a proxy sends (lower-case names, values as bytes)."""
    _check_fields(
        method=method, path=path, query=query, user_id=user_id, scopes=scopes, request_id=request_id
    )
    if deadline is not None and not 0 <= deadline < 10**15:  # what _DEADLINE_RE admits: 1-15 digits
        raise IdentityError("malformed", "deadline must be Unix milliseconds")
    raw_deadline = "" if deadline is None else str(deadline)
    ts = int(time.time()) if timestamp is None else timestamp
    message = canonical_string(
        timestamp=ts,
        method=method,
        path=path,
        query=query,
        body_sha256=body_sha256(body),
        user_id=user_id,
        scopes=scopes,
        request_id=request_id,
        deadline=raw_deadline,
    )
    quoted = user_id if user_id.isdigit() and user_id.isascii() else quote(user_id, safe="")
    headers = [
        (_B_USER_ID, quoted.encode()),
        (_B_SCOPES, scopes.encode()),
        (_B_REQUEST_ID, request_id.encode()),
        (_B_TIMESTAMP, str(ts).encode()),
        (_B_SIGNATURE, f"{VERSION}={_digest(secret, message)}".encode()),
    ]
    if deadline is not None:
        headers.append((_B_DEADLINE, raw_deadline.encode()))
    return headers


def sign(
    secret: Secret,
    *,
    method: str,
    path: str,
    query: str,
    body: bytes,
    user_id: str,
    scopes: str,
    request_id: str,
    timestamp: int | None = None,
    deadline: int | None = None,
) -> dict[str, str]:
    """Return the assertion headers (lower-case names) for one request: the five, plus
    ``x-request-deadline`` when ``deadline`` (Unix milliseconds) is given.

    ``path`` and ``query`` are the raw request-line text (still percent-encoded; bytes
    decoded as latin-1), ``query`` without the ``?`` and ``""`` when there is none;
    ``body`` is the exact body sent (``b""`` for none). Neither has a default: forgetting
    one must not silently sign an empty query or body. ``deadline`` may be left out: a request
    without one is signed as having none, which is what the backend then sees.
    Raises ``IdentityError("malformed")`` for fields that cannot be signed safely.
    """
    pairs = sign_headers(
        secret,
        method=method,
        path=path,
        query=query,
        body=body,
        user_id=user_id,
        scopes=scopes,
        request_id=request_id,
        timestamp=timestamp,
        deadline=deadline,
    )
    return {name.decode(): value.decode() for name, value in pairs}


def parse_deadline(value: str | None) -> int | None:
    """The deadline a ``X-Request-Deadline`` value names (Unix milliseconds), or None if absent or
    malformed. It does not verify anything: ``verify`` checks that a signed request's deadline is the
    one the gateway signed."""
    if value is None or not _DEADLINE_RE.fullmatch(value):
        return None
    return int(value)


def deadline_passed(value: str | None, now: float | None = None) -> bool:
    """True when ``value`` (an ``X-Request-Deadline`` header) names a moment at or before ``now``
    (Unix seconds, default the clock): the gateway has stopped waiting, so nobody will read the answer."""
    deadline = parse_deadline(value)
    if deadline is None:
        return False
    current = time.time() if now is None else now
    return deadline <= int(current * 1000)


def _header(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name)
    if value is None:
        raise IdentityError("missing", name)
    return value


def verify(
    secrets: Secret | Sequence[Secret],
    headers: Mapping[str, str],
    *,
    method: str,
    path: str,
    query: str,
    body: bytes,
    now: float | None = None,
    skew: int = DEFAULT_SKEW_SECONDS,
    accept_v1: bool = False,
) -> Identity:
    """Check the assertion in ``headers`` for this request and return the identity.

    ``path``, ``query`` and ``body`` are what this backend received, raw (as for ``sign``).
    ``headers`` may use any letter case.  ``secrets`` may hold several secrets
    (rotation); any one of them may have signed.  A ``v1=`` signature (no query, no body)
    is refused as ``unsupported_version`` unless ``accept_v1`` (an upgrade window only).
    An ``x-request-deadline`` header is part of what a v2 signature covers (absent: signed as
    none), so a deadline added, removed or changed after signing fails as ``bad_signature``.
    Raises ``IdentityError``.
    """
    lowered = {name.lower(): value for name, value in headers.items()}
    signature = _header(lowered, HEADER_SIGNATURE)
    raw_ts = _header(lowered, HEADER_TIMESTAMP)
    raw_user = _header(lowered, HEADER_USER_ID)
    scopes = _header(lowered, HEADER_SCOPES)
    request_id = _header(lowered, HEADER_REQUEST_ID)
    raw_deadline = lowered.get(HEADER_DEADLINE, "")

    match = _SIGNATURE_RE.fullmatch(signature)
    if match is None:
        raise IdentityError("malformed", "signature must be v2=<64 hex digits>")
    version, given = match.group(1), match.group(2)
    if version == "v1" and not accept_v1:
        raise IdentityError("unsupported_version", "v1 assertions do not bind the query and body")
    if not _TIMESTAMP_RE.fullmatch(raw_ts):
        raise IdentityError("malformed", "timestamp must be Unix seconds")
    if raw_deadline and not _DEADLINE_RE.fullmatch(raw_deadline):
        raise IdentityError("malformed", "deadline must be Unix milliseconds")
    try:
        user_id = unquote(raw_user, errors="strict")
    except UnicodeDecodeError as exc:
        raise IdentityError("malformed", "user id is not percent-encoded UTF-8") from exc
    _check_fields(
        method=method, path=path, query=query, user_id=user_id, scopes=scopes, request_id=request_id
    )

    ts = int(raw_ts)
    current = time.time() if now is None else now
    if ts < current - skew:
        raise IdentityError("expired", f"signed {int(current - ts)} s ago")
    if ts > current + skew:
        raise IdentityError("future", f"signed {int(ts - current)} s ahead")

    if version == "v1":
        message = _canonical_v1(
            timestamp=ts, method=method, path=path, user_id=user_id, scopes=scopes, request_id=request_id
        )
    else:
        message = canonical_string(
            timestamp=ts,
            method=method,
            path=path,
            query=query,
            body_sha256=body_sha256(body),
            user_id=user_id,
            scopes=scopes,
            request_id=request_id,
            deadline=raw_deadline,
        )
    candidates = [secrets] if isinstance(secrets, str | bytes) else list(secrets)
    # Compare against every secret so timing does not tell which one matched.
    ok = False
    for secret in candidates:
        ok |= hmac.compare_digest(_digest(secret, message), given)
    if not ok:
        raise IdentityError("bad_signature")
    return Identity(
        user_id=user_id,
        scopes=tuple(scopes.split()),
        request_id=request_id,
        timestamp=ts,
        # v1 did not sign a deadline: one sent alongside a v1 assertion is not part of what verified.
        deadline=int(raw_deadline) if raw_deadline and version != "v1" else None,
    )
